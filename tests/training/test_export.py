"""defectgate export: the bundle validates against the runtime's schema, runs through the runtime's
own path, and the PyTorch/ONNX parity check holds (and fails when it should)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from defectgate.bundle import Sidecar, load_bundle, sha256_file
from defectgate.errors import BundleError
from defectgate.types import Detections

pytestmark = pytest.mark.slow


def test_sidecar_matches_the_runtime_schema(bundle, trained):
    root = bundle.bundle
    raw = json.loads((root / "model.json").read_text())
    sc = Sidecar.model_validate(raw)  # the runtime's schema, strict (extra keys forbidden)
    assert sc.sha256 == sha256_file(root / "model.onnx")
    assert sc.classes == ["scratch", "dent", "crack", "stain"]
    assert sc.input.imgsz == (64, 64) and sc.architecture == "yolo11n" and sc.precision == "fp32"
    assert sc.output.layout == "yolo_raw" and sc.output.shape[:2] == [1, 4 + 4]
    assert set(sc.class_thresholds) == set(sc.classes)
    assert {"map50", "map50_95", "escape_rate", "overkill_rate"} <= set(sc.metrics)
    assert sc.training["data_fingerprint"] == json.loads((trained.run_dir / "run.json").read_text())["data"]["sha256"]
    assert sc.versions["ultralytics"] and sc.created_at
    assert sc.engine_info["parity"]["passed"] is True
    assert sorted(p.name for p in root.iterdir()) == ["model.json", "model.onnx"]
    assert not [p for p in root.parent.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_bundle_runs_through_the_runtime_path(bundle, synth_data):
    import cv2

    from defectgate.detector import Detector

    b = load_bundle(bundle.bundle, expect_classes=["scratch", "dent", "crack", "stain"])
    detector = Detector(b, backend_name="onnxruntime", conf_floor=0.001)
    img = cv2.imread(str(next((synth_data.parent / "images" / "val").iterdir())))
    batch, info = detector.prepare(img)
    raw = detector.infer(batch)
    assert raw[0].shape == tuple(b.sidecar.output.shape)
    dets = detector.decode(raw, info)
    detector.close()
    assert isinstance(dets, Detections)
    if len(dets):
        assert (dets.xyxy[:, 2] <= img.shape[1] + 1e-3).all() and (dets.xyxy[:, 3] <= img.shape[0] + 1e-3).all()


def test_parity_check_compares_detections_and_fails_on_a_changed_model(bundle, trained, tmp_path):
    """Same weights: passes. A model whose weights were perturbed: the same check raises."""
    import shutil

    import onnx
    from onnx import numpy_helper

    from defectgate.staging import write_json_atomic as write_json
    from defectgate_training.export import PARITY, ParityError, parity_check
    from defectgate_training.torch_backend import load_torch_model

    _, model, _, _, _ = load_torch_model(trained.best)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (96, 128, 3), dtype=np.uint8) for _ in range(3)]
    loose = PARITY["fp32"].__class__(conf=0.0005, margin=0.0003)  # compare even an untrained model's boxes
    report = parity_check(bundle.bundle, model, images, loose)
    assert report["passed"] and report["detections_compared"] > 0 and report["max_raw_abs_diff"] < 1e-3

    bad = tmp_path / "bad"
    shutil.copytree(bundle.bundle, bad)
    m = onnx.load(str(bad / "model.onnx"))
    for conv in [i for i in m.graph.initializer if len(i.dims) == 4]:  # every conv weight, +-50 %
        w = numpy_helper.to_array(conv)
        w = w * (1 + rng.normal(0, 0.5, w.shape)).astype(w.dtype)
        conv.CopyFrom(numpy_helper.from_array(w, conv.name))
    onnx.save(m, str(bad / "model.onnx"))
    sc = json.loads((bad / "model.json").read_text())
    sc["sha256"] = sha256_file(bad / "model.onnx")
    write_json(bad / "model.json", sc)
    with pytest.raises(ParityError, match="differ beyond tolerance"):
        parity_check(bad, model, images, loose)


def test_export_refuses_a_dataset_with_other_classes_and_writes_nothing(trained, synth_data, tmp_path):
    from defectgate_training.export import export_bundle

    other = tmp_path / "data.yaml"
    other.write_text(synth_data.read_text().replace("scratch", "gouge"))
    with pytest.raises(BundleError, match="differ from"):
        export_bundle(trained.best, tmp_path / "out", str(other))
    assert not (tmp_path / "out").exists()


def test_compare_detections_tolerances():
    from defectgate_training.export import ParityTolerance, compare_detections

    tol = ParityTolerance()
    a = Detections(np.array([[10, 10, 50, 50]], np.float32), np.array([0.8], np.float32), np.array([1]))
    same = Detections(np.array([[10.2, 10, 50, 50.3]], np.float32), np.array([0.81], np.float32), np.array([1]))
    assert compare_detections(a, same, tol)[1] == []
    other_class = Detections(same.xyxy, same.confidence, np.array([2]))
    assert "no partner" in compare_detections(a, other_class, tol)[1][0]
    shifted = Detections(np.array([[12, 10, 52, 50]], np.float32), np.array([0.8], np.float32), np.array([1]))
    assert "differs by 2.00 px" in compare_detections(a, shifted, tol)[1][0]
    assert "no partner at all" in compare_detections(a, Detections.empty(), tol)[1][0]


def test_cli_export_writes_a_loadable_bundle(trained, synth_data, tmp_path, capsys):
    from defectgate.cli import main

    rc = main(["export", "--weights", str(trained.best), "--data", str(synth_data), "--out", str(tmp_path / "b"),
               "--no-calibrate", "--parity-images", "2"])
    assert rc == 0
    assert "parity vs PyTorch" in capsys.readouterr().out
    assert load_bundle(tmp_path / "b").sidecar.class_thresholds == {}
    assert main(["export", "--weights", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "c")]) == 2


def test_export_with_tta_records_the_views_and_the_runtime_judges_with_them(bundle, trained, synth_data, tmp_path,
                                                                           capsys):
    from defectgate.cli import main
    from defectgate_training.datayaml import load_data_yaml, read_image, split_images
    from defectgate_training.evaluate import evaluate_model, open_detector

    plain = load_bundle(bundle.bundle).sidecar
    assert not plain.tta.active and plain.output.strides == [8, 16, 32]  # every yolo_raw export records them
    rc = main(["export", "--weights", str(trained.best), "--data", str(synth_data), "--out", str(tmp_path / "b"),
               "--tta", "hflip", "--parity-images", "2"])
    assert rc == 0
    assert "tta hflip" in capsys.readouterr().out
    sc = load_bundle(tmp_path / "b").sidecar
    assert sc.tta.flips == "hflip" and sc.tta.scales == [1.0] and sc.output.strides == [8, 16, 32]
    assert sc.input.batch == 2 and sc.output.shape[0] == 2  # the two views are the model's batch (issue 22)
    assert sc.engine_info["parity"]["passed"] is True  # parity compares the bare network with PyTorch
    # what export calibrated on is what evaluate (and the station) measures: the views are on
    again = evaluate_model(tmp_path / "b", synth_data, "val", None, backend="onnxruntime")
    assert again["map50"] == pytest.approx(sc.metrics["map50"], abs=1e-9)
    img = read_image(split_images(load_data_yaml(synth_data), "val")[0])
    with_views, name = open_detector(tmp_path / "b", "onnxruntime")
    without, _ = open_detector(bundle.bundle, "onnxruntime")
    try:
        batch = with_views.prepare(img)[0].copy()
        a, b = with_views.infer(batch)[0], without.infer(batch)[0]
    finally:
        with_views.close(), without.close()
    assert "+tta:hflipx2batch" in name  # the views as one batch: one inference per frame
    assert a.shape == b.shape and not np.array_equal(a, b)  # the same network, averaged over two views
    # the .pt with the same views agrees with the bundle (evaluate --tta on weights before exporting)
    pt, pt_name = open_detector(trained.best, tta="hflip")
    assert "tta hflip" in pt_name and pt.backend.name == "pytorch+tta:hflip"
    np.testing.assert_allclose(pt.infer(batch)[0], a, atol=1e-3)
    # a bundle judges with the views it was calibrated with and refuses others
    with pytest.raises(BundleError, match=r"exported with tta \{'flips': 'hflip', 'scales': \[1.0\]\}, not 'hvflip'"):
        evaluate_model(tmp_path / "b", synth_data, "val", None, backend="onnxruntime", tta="hvflip")
