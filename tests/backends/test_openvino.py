"""OpenVINO backend and NNCF INT8 export on a real (tiny, untrained) YOLO11n exported to ONNX.

Parity is checked against ONNX Runtime through the same preprocess and postprocess. INT8 is checked
for being quantized, loadable, traceable to its calibration set and close to FP32 on calibration-like
images; accuracy on a trained model is measured by the bench and the INT8 report, not here."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from defectgate.backends import load_backend
from defectgate.bundle import load_bundle
from defectgate.errors import BackendError, BundleError, DatasetError, MissingExtraError
from defectgate.postprocess import decode
from defectgate.preprocess import Preprocessor

from tinyyolo import make_tiny_conv_bundle, part_images

ov = pytest.importorskip("openvino", reason="the [openvino] extra is not installed")
OpenVinoBackend = pytest.importorskip("defectgate.backends.openvino").OpenVinoBackend
int8 = pytest.importorskip("defectgate_training.openvino_int8", reason="the [train] extra is not installed")


@pytest.fixture(scope="session")
def calib_dir(tmp_path_factory) -> Path:
    return part_images(tmp_path_factory.mktemp("calib") / "images", 6, seed=1)


@pytest.fixture(scope="session")
def int8_bundle(tiny_bundle, calib_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("int8") / "int8"
    int8.export_openvino_int8(tiny_bundle, calib_dir, out)
    return out


def _frames(folder: Path) -> list[np.ndarray]:
    return [cv2.imread(str(p)) for p in sorted(folder.glob("*.png"))]


def test_openvino_matches_onnxruntime_through_the_same_pre_and_postprocess(tiny_bundle, calib_dir):
    bundle = load_bundle(tiny_bundle)
    ovb = OpenVinoBackend(bundle)
    ort = load_backend(bundle, "onnxruntime")
    pre, sc = Preprocessor(bundle.sidecar.input), bundle.sidecar
    assert ovb.name == "openvino:CPU:fp32"
    compared = 0
    for image in _frames(calib_dir):
        x, info = pre(image)
        a, r = ovb.infer(x)[0], ort.infer(x)[0]
        assert a.shape == r.shape == (1, 4 + len(sc.classes), sc.output.shape[2])
        assert np.abs(a[0, :4] - r[0, :4]).max() < 0.05  # boxes, input pixels
        assert np.abs(a[0, 4:] - r[0, 4:]).max() < 1e-3  # class scores
        # the same postprocess on both gives the same detections
        threshold = float(np.quantile(r[0, 4:].max(0), 0.9))  # untrained scores are small: keep the top 10%
        da = decode(a, sc.output, len(sc.classes), info, threshold, sc.iou_threshold)
        dr = decode(r, sc.output, len(sc.classes), info, threshold, sc.iou_threshold)
        if len(dr) == len(da) and len(dr):
            np.testing.assert_allclose(da.xyxy, dr.xyxy, atol=0.05)
            np.testing.assert_array_equal(da.class_id, dr.class_id)
            compared += 1
    assert compared >= len(_frames(calib_dir)) // 2
    ovb.close()
    ort.close()


def test_outputs_are_copies_that_the_next_infer_does_not_change(tiny_bundle, calib_dir):
    backend = OpenVinoBackend(load_bundle(tiny_bundle))
    pre = Preprocessor(load_bundle(tiny_bundle).sidecar.input)
    frames = _frames(calib_dir)
    first = backend.infer(pre(frames[0])[0])[0]
    kept = first.copy()
    backend.infer(pre(frames[1])[0])
    np.testing.assert_array_equal(first, kept)


def test_auto_picks_openvino_on_x86_and_threads_reach_the_compiled_model(tiny_bundle):
    import platform

    bundle = load_bundle(tiny_bundle)
    if platform.machine().lower() in ("x86_64", "amd64"):
        assert load_backend(bundle, "auto").name.startswith("openvino:")
    backend = OpenVinoBackend(bundle, threads=1)
    assert int(backend.compiled.get_property("INFERENCE_NUM_THREADS")) == 1
    assert str(backend.compiled.get_property("INFERENCE_PRECISION_HINT")) in ("<Type: 'float32'>", "f32", "float32")


def test_bad_options_are_refused(tiny_bundle):
    bundle = load_bundle(tiny_bundle)
    with pytest.raises(BackendError, match="hint 'FASTEST'"):
        OpenVinoBackend(bundle, hint="FASTEST")
    with pytest.raises(BackendError, match="device 'NPU9'"):
        OpenVinoBackend(bundle, device="NPU9")


def test_missing_openvino_names_the_extra(tiny_bundle, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(MissingExtraError, match=r"defectgate\[openvino\]"):
        OpenVinoBackend(load_bundle(tiny_bundle))


# -- IR exports ------------------------------------------------------------------------------------------
def test_fp32_ir_bundle_loads_and_matches_the_onnx(tiny_bundle, tmp_path, calib_dir):
    out = int8.export_openvino_ir(tiny_bundle, tmp_path / "ir")
    sidecar = json.loads((out / "model.json").read_text())
    assert sidecar["engine"] == "openvino" and sidecar["precision"] == "fp32"
    assert sidecar["source_onnx_sha256"] == load_bundle(tiny_bundle).sidecar.sha256
    ir = OpenVinoBackend(load_bundle(out))
    onnx = OpenVinoBackend(load_bundle(tiny_bundle))
    x = Preprocessor(ir.bundle.sidecar.input)(_frames(calib_dir)[0])[0]
    np.testing.assert_allclose(ir.infer(x)[0], onnx.infer(x)[0], atol=1e-3)


def test_ir_next_to_the_onnx_is_used_and_a_stale_one_is_refused(tiny_bundle, tmp_path):
    root = tmp_path / "b"
    shutil.copytree(tiny_bundle, root)
    int8.export_openvino_ir(root)  # writes model.xml/.bin beside model.onnx
    assert OpenVinoBackend(load_bundle(root)).model_file.name == "model.xml"
    # the ONNX is replaced by another export (here: same graph, one changed byte in a sidecar-consistent way)
    sidecar = json.loads((root / "model.json").read_text())
    onnx = root / "model.onnx"
    onnx.write_bytes(onnx.read_bytes() + b"\0")  # trailing byte: still a loadable ONNX, different sha256
    from defectgate.bundle import sha256_file

    sidecar["sha256"] = sha256_file(onnx)
    (root / "model.json").write_text(json.dumps(sidecar))
    with pytest.raises(BundleError, match="model.xml: this OpenVINO IR was converted from an ONNX"):
        OpenVinoBackend(load_bundle(root))


def test_ir_bundle_with_mismatched_source_onnx_or_weights_is_refused(int8_bundle, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(int8_bundle, bad)
    sidecar = json.loads((bad / "model.json").read_text())
    sidecar["source_onnx_sha256"] = "0" * 64
    (bad / "model.json").write_text(json.dumps(sidecar))
    with pytest.raises(BundleError, match="source_onnx_sha256"):
        OpenVinoBackend(load_bundle(bad))

    shutil.rmtree(bad)
    shutil.copytree(int8_bundle, bad)
    with open(bad / "model.bin", "r+b") as f:  # flip one weight byte
        f.seek(1000)
        b = f.read(1)
        f.seek(1000)
        f.write(bytes([b[0] ^ 0xFF]))
    with pytest.raises(BundleError, match="weights_sha256"):
        OpenVinoBackend(load_bundle(bad))

    shutil.rmtree(bad)
    shutil.copytree(int8_bundle, bad)
    (bad / "model.bin").unlink()
    with pytest.raises(BundleError, match="model.bin is missing"):
        OpenVinoBackend(load_bundle(bad))


# -- INT8 ---------------------------------------------------------------------------------------------------
def test_int8_bundle_is_quantized_traceable_and_close_to_fp32(int8_bundle, tiny_bundle, calib_dir):
    bundle = load_bundle(int8_bundle)
    sc = bundle.sidecar
    assert (sc.engine, sc.precision) == ("openvino", "int8")
    fp = int8.calibration_fingerprint(int8.calibration_images(calib_dir), calib_dir)
    assert sc.engine_info["calibration"] == {"fingerprint": fp, "images": 6, "folder": "images"}
    assert sc.engine_info["quantization"]["mode"] == "ptq"
    assert sc.engine_info["quantization"]["ignored_ops"] > 0  # the detect head stays in float
    model = ov.Core().read_model(str(bundle.model_path))
    assert sum(op.get_type_name() == "FakeQuantize" for op in model.get_ordered_ops()) > 50
    q = OpenVinoBackend(bundle)
    f = OpenVinoBackend(load_bundle(tiny_bundle))
    assert q.name == "openvino:CPU:int8"
    pre = Preprocessor(sc.input)
    for image in _frames(calib_dir):
        x = pre(image)[0]
        a, b = q.infer(x)[0][0], f.infer(x)[0][0]
        assert np.isfinite(a).all()
        # untrained weights quantize worse than trained ones; still, boxes follow FP32 closely
        assert np.corrcoef(a[:4].ravel(), b[:4].ravel())[0, 1] > 0.9


def test_calibration_fingerprint_changes_with_content(calib_dir, tmp_path):
    copy = tmp_path / "c"
    shutil.copytree(calib_dir, copy)
    before = int8.calibration_fingerprint(int8.calibration_images(copy), copy)
    img = cv2.imread(str(copy / "part_000.png"))
    img[0, 0] = 255 - img[0, 0]
    cv2.imwrite(str(copy / "part_000.png"), img)
    assert int8.calibration_fingerprint(int8.calibration_images(copy), copy) != before


def test_bad_calibration_folders_give_clear_errors(tiny_bundle, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="no calibration images"):
        int8.export_openvino_int8(tiny_bundle, empty, tmp_path / "out")
    with pytest.raises(DatasetError, match="calibration folder not found"):
        int8.export_openvino_int8(tiny_bundle, tmp_path / "nope", tmp_path / "out")

    gray = part_images(tmp_path / "gray", 3)
    cv2.imwrite(str(gray / "part_001.png"), np.full((96, 128), 100, np.uint8))
    with pytest.raises(DatasetError, match=r"part_001.png: is grey, 2 other calibration images are colour"):
        int8.calibration_images(gray)
    all_grey = tmp_path / "all_grey"
    all_grey.mkdir()
    for i in range(2):  # a mono camera's set is fine: frames reach the model replicated to 3 channels
        cv2.imwrite(str(all_grey / f"g{i}.png"), np.full((96, 128), 90 + i, np.uint8))
    assert len(int8.calibration_images(all_grey)) == 2

    rgba = part_images(tmp_path / "rgba", 2)
    cv2.imwrite(str(rgba / "part_000.png"), np.full((96, 128, 4), 100, np.uint8))
    with pytest.raises(DatasetError, match=r"part_000.png: has 4 channels"):
        int8.calibration_images(rgba)

    mixed = part_images(tmp_path / "mixed", 3)
    cv2.imwrite(str(mixed / "zz_big.png"), np.full((480, 640, 3), 100, np.uint8))
    with pytest.raises(DatasetError, match=r"zz_big.png: is 640x480 pixels, 3 other calibration images are 128x96"):
        int8.calibration_images(mixed)
    assert len(int8.calibration_images(mixed, allow_mixed_sizes=True)) == 4

    tiny = tmp_path / "tiny"
    tiny.mkdir()
    cv2.imwrite(str(tiny / "a.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(DatasetError, match="too small"):
        int8.calibration_images(tiny)
    assert not (tmp_path / "out").exists()  # nothing written half-way


def test_int8_export_refuses_a_non_onnx_source(int8_bundle, calib_dir, tmp_path):
    with pytest.raises(BundleError, match="starts from an ONNX bundle"):
        int8.export_openvino_int8(int8_bundle, calib_dir, tmp_path / "out")


def test_project_map50_scores_a_perfect_and_a_wrong_predictor(tmp_path):
    from defectgate.types import Detections

    images = tmp_path / "images"
    labels = tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    cv2.imwrite(str(images / "a.png"), np.zeros((100, 200, 3), np.uint8))
    (labels / "a.txt").write_text("1 0.5 0.5 0.2 0.4\n")  # x 80..120, y 30..70
    truth = Detections(np.array([[80, 30, 120, 70]], np.float32), np.array([0.9], np.float32), np.array([1]))
    metric = int8.project_map50(["scratch", "dent", "stain"])  # defectgate evaluate's mAP50
    assert metric(lambda img: truth, [images / "a.png"]) == pytest.approx(1.0, abs=0.01)  # 101-point AP: 0.995
    wrong_class = Detections(truth.xyxy, truth.confidence, np.array([0]))
    assert metric(lambda img: wrong_class, [images / "a.png"]) == pytest.approx(0.0)
    shifted = Detections(truth.xyxy + 30, truth.confidence, truth.class_id)
    assert metric(lambda img: shifted, [images / "a.png"]) == pytest.approx(0.0)


@pytest.mark.slow
def test_accuracy_aware_mode_runs_when_ptq_loses_too_much(calib_dir, tmp_path):
    """A metric that rewards agreement with FP32 makes any quantization error a loss: with a zero
    tolerance the export must fall back to NNCF's accuracy-aware mode and record every score. (A
    three-conv model: NNCF's search recompiles once per layer group, far too slow for YOLO11n in CI.)"""
    source = make_tiny_conv_bundle(tmp_path / "tiny")
    bundle = load_bundle(source)
    reference = OpenVinoBackend(bundle)
    pre = Preprocessor(bundle.sidecar.input)
    images = sorted(calib_dir.glob("*.png"))[:3]
    ref = {p.name: reference.infer(pre(cv2.imread(str(p)))[0])[0] for p in images}

    def agreement(predict, paths):
        err = 0.0
        for p in paths:
            img = cv2.imread(str(p))
            got = predict(img)
            want = decode(ref[Path(p).name], bundle.sidecar.output, 3, pre(img)[1], 1e-6, 0.45)
            k = min(len(got), len(want), 20)
            err += float(np.abs(got.confidence[:k] - want.confidence[:k]).sum()) if k else 1.0
        return 1.0 - err / len(paths)  # 1.0 = identical to FP32 (NNCF divides by the FP32 score)

    result = int8.export_openvino_int8(source, calib_dir, tmp_path / "ac", val_images=images, metric=agreement,
                                       metric_name="agreement", max_drop=0.0, conf_threshold=1e-6, max_iterations=2)
    assert result.mode == "accuracy_control"
    sc = load_bundle(result.bundle_dir).sidecar
    assert sc.engine_info["quantization"]["mode"] == "accuracy_control"
    assert {"agreement", "agreement_fp32", "agreement_drop", "agreement_ptq", "within_tolerance"} <= set(sc.metrics)
    assert sc.metrics["agreement_fp32"] == pytest.approx(1.0, abs=1e-3)
    assert sc.metrics["agreement"] >= sc.metrics["agreement_ptq"] - 1e-5  # reverting layers never made it worse
    assert OpenVinoBackend(load_bundle(result.bundle_dir)).name == "openvino:CPU:int8"


def test_calibration_from_a_dataset_yaml_uses_its_train_split_spread_out(tmp_path):
    part_images(tmp_path / "images" / "train", 6)
    part_images(tmp_path / "images" / "val", 2, seed=5)
    (tmp_path / "data.yaml").write_text(
        f"path: {tmp_path}\ntrain: images/train\nval: images/val\nnames:\n  0: scratch\n  1: dent\n  2: stain\n")
    picked = int8._calibration_list(tmp_path / "data.yaml", allow_mixed_sizes=False, limit=3)
    # the one sampling rule (defectgate.images.evenly_spaced): spread from the first image to the last
    assert [p.name for p in picked] == ["part_000.png", "part_002.png", "part_005.png"]
    assert [p.parent.name for p in int8._val_list(tmp_path / "data.yaml")] == ["val", "val"]


def test_the_decode_recipe_quantizes_every_convolution_and_keeps_the_decode_tail_in_float(tiny_onnx):
    """issue 22: the INT8 model that pays keeps only the head's box decode (DFL, anchor arithmetic, the
    box/score Concat) and the class Sigmoid in float, as ultralytics' own export does; the old recipe
    also kept the head's convolutions and every SiLU's Sigmoid in float."""
    nncf = pytest.importorskip("nncf")
    model = int8.model_to_quantize(ov, tiny_onnx)
    names = {op.get_friendly_name(): op.get_type_name() for op in model.get_ordered_ops()}
    # every SiLU is one Swish op (fusable into its convolution), only the class-score Sigmoid is left
    assert sum(t == "Swish" for t in names.values()) > 50
    assert [n for n, t in names.items() if t == "Sigmoid"] == ["/model.23/Sigmoid"]
    decode = set(int8.float_ops(nncf, model, "decode").names)
    head = set(int8.float_ops(nncf, model, "head").names)
    assert int8.float_ops(nncf, model, "none") is None
    convs = {n for n, t in names.items() if t == "Convolution"}
    assert convs - decode == convs - {n for n in convs if "/dfl/" in n}  # every conv is INT8 but DFL's fixed one
    assert {n for n in decode if names[n] == "Sigmoid"} == {n for n, t in names.items()
                                                           if t == "Sigmoid" and n.startswith("/model.23/Sigmoid")}
    assert any("/dfl/Softmax" in n for n in decode) and any(names[n] == "Concat" for n in decode)
    assert "/model.23/Sigmoid" in head
    assert len(convs & head) > 10
    with pytest.raises(BundleError, match="INT8 float scope 'tail' is unknown; use one of decode, head, none"):
        int8.float_ops(nncf, model, "tail")


def test_an_int8_export_records_its_recipe(int8_bundle):
    quant = load_bundle(int8_bundle).sidecar.engine_info["quantization"]
    assert quant["float_scope"] == "decode" and quant["subset_size"] == 6  # the whole calibration set
