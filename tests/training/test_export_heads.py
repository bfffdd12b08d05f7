"""YOLO26-style models carry two heads. `defectgate export --head` picks which one the bundle ships:
the NMS-free one-to-one head (end2end output, the default) or the one-to-many head (raw output that the
runtime NMSes). Both must pass parity, and evaluating the `.pt` with the same head must agree with the
bundle (the issue's evaluate parity)."""

from __future__ import annotations

import pytest

from defectgate.bundle import load_bundle
from defectgate.errors import BundleError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained26(synth_data, tmp_path_factory):
    """One 1-epoch YOLO26n run at 64 px on the shared synthetic set."""
    pytest.importorskip("ultralytics", reason="needs the [train] extra")
    from defectgate_training.train import load_train_config, train

    out = tmp_path_factory.mktemp("dg-train26") / "run"
    cfg = load_train_config(None, {"data": str(synth_data), "model": "yolo26n.yaml", "epochs": 1, "imgsz": 64,
                                   "batch": 8, "workers": 0, "device": "cpu", "seed": 0, "out": str(out),
                                   "augment": "none", "hyp": {"plots": False, "val": False}})
    return train(cfg).best


@pytest.mark.parametrize("head, layout", [("auto", "end2end"), ("nms", "yolo_raw")])
def test_export_ships_the_chosen_head_and_evaluate_agrees(trained26, synth_data, tmp_path, head, layout):
    from defectgate_training.evaluate import evaluate_model
    from defectgate_training.export import export_bundle

    r = export_bundle(trained26, tmp_path / "b", str(synth_data), parity_images=6, calibrate=False, head=head)
    sc = load_bundle(r.bundle).sidecar
    assert sc.architecture == "yolo26n" and sc.output.layout == layout
    if layout == "end2end":
        assert sc.output.shape[2] == 6 and sc.output.max_det == sc.output.shape[1]
    else:
        assert sc.output.shape[:2] == [1, 4 + len(sc.classes)]
    assert r.parity["passed"] is True
    on_bundle = evaluate_model(r.bundle, synth_data, "val", None, backend="onnxruntime", head=head)
    on_pt = evaluate_model(trained26, synth_data, "val", None, head=head)
    assert on_bundle["map50"] == pytest.approx(on_pt["map50"], abs=0.01)
    assert on_bundle["map50_95"] == pytest.approx(on_pt["map50_95"], abs=0.01)
    # a bundle cannot run the other head: asking for it is refused, not silently ignored
    other = "nms" if layout == "end2end" else "nms-free"
    with pytest.raises(BundleError, match=rf"exported with output layout '{layout}', not the '{other}' head"):
        evaluate_model(r.bundle, synth_data, "val", None, backend="onnxruntime", head=other)


def test_tta_is_refused_on_the_nms_free_head_and_nothing_is_written(trained26, tmp_path):
    from defectgate_training.export import export_bundle

    with pytest.raises(BundleError, match=r"model.json: sidecar: .*tta \{'flips': 'hflip', .*\} merges the views of "
                                          r"a yolo_raw head; output.layout is 'end2end' .*--head nms"):
        export_bundle(trained26, tmp_path / "b", tta="hflip")
    assert not (tmp_path / "b").exists()


def test_nms_free_head_is_refused_for_a_model_without_one(trained, tmp_path):
    from defectgate_training.export import export_bundle

    with pytest.raises(BundleError, match=r"best\.pt: yolo11n has no NMS-free head"):
        export_bundle(trained.best, tmp_path / "b", head="nms-free")
    assert not (tmp_path / "b").exists()
    with pytest.raises(BundleError, match="head 'fast' is not one of auto, nms-free, nms"):
        export_bundle(trained.best, tmp_path / "b", head="fast")
