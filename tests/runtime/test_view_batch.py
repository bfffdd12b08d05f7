"""Test-time views as one batched inference: a model exported with its views as its static batch
judges a frame exactly as the batch-1 model does view by view (same weights), in one inference, on
ONNX Runtime and on OpenVINO (float input, and the uint8 canvas with the preprocessing in the graph);
INT8 calibration (OpenVINO, ONNX Runtime, TensorRT) feeds such a model the views it will run; a
sidecar whose batch fits neither one view nor all of them is refused with the fix."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from defectgate.backends import load_backend
from defectgate.bundle import InputSpec, OutputSpec, Sidecar, load_bundle, read_sidecar, sha256_file, write_sidecar
from defectgate.detector import Detector
from defectgate.engine_build import CalibrationBatches
from defectgate.errors import BundleError
from defectgate.tta import PRESETS, view_batcher

from station_helpers import CLASSES, IMGSZ, _export_tiny_yolo

STRIDES = [8, 16, 32]
ANCHORS = sum((IMGSZ // s) ** 2 for s in STRIDES)


def _bundle(onnx: Path, root: Path, mode: str, batch: int) -> Path:
    root.mkdir(parents=True)
    shutil.copyfile(onnx, root / "model.onnx")
    write_sidecar(root, Sidecar(
        model_file="model.onnx", sha256=sha256_file(root / "model.onnx"), architecture="yolo11n", classes=CLASSES,
        input=InputSpec(imgsz=(IMGSZ, IMGSZ), batch=batch), tta=PRESETS[mode],
        output=OutputSpec(layout="yolo_raw", shape=[batch, 4 + len(CLASSES), ANCHORS], strides=STRIDES)))
    return root


@pytest.fixture(scope="module")
def bundles(tiny_onnx, tmp_path_factory) -> dict[str, Path]:
    """The same network three times: batch 1, batch 4 (hvflip) and batch 12 (hvflip-ms)."""
    out = tmp_path_factory.mktemp("viewbatch")
    (out / "b4").mkdir(), (out / "b12").mkdir()
    b4, b12 = _export_tiny_yolo(out / "b4", batch=4), _export_tiny_yolo(out / "b12", batch=12)
    return {"hvflip-1": _bundle(tiny_onnx, out / "hv1", "hvflip", 1), "hvflip-4": _bundle(b4, out / "hv4", "hvflip", 4),
            "ms-1": _bundle(tiny_onnx, out / "ms1", "hvflip-ms", 1), "ms-12": _bundle(b12, out / "ms12", "hvflip-ms", 12)}


def _frame(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((72, 96, 3), 60, np.uint8)
    img[10:40, 8:70] = 170  # an asymmetric part: the mirror views really differ
    return np.clip(img + rng.integers(0, 25, img.shape), 0, 255).astype(np.uint8)


def _counted(detector: Detector) -> dict[str, int]:
    calls = {"n": 0}
    inner = detector.backend.backend
    real = inner.infer

    def infer(batch):
        calls["n"] += 1
        return real(batch)

    inner.infer = infer
    return calls


@pytest.mark.parametrize("mode, views, backend", [("hvflip", 4, "onnxruntime"), ("ms", 12, "onnxruntime"),
                                                   ("hvflip", 4, "openvino"), ("ms", 12, "openvino")])
def test_a_view_batch_model_judges_in_one_inference_what_the_batch_1_model_judges_view_by_view(
        bundles, mode, views, backend):
    if backend == "openvino":
        pytest.importorskip("openvino")
    one = Detector(load_bundle(bundles[f"{mode}-1"]), backend_name=backend, threads=1, conf_floor=0.05)
    batched = Detector(load_bundle(bundles[f"{mode}-{views}"]), backend_name=backend, threads=1, conf_floor=0.05)
    # OpenVINO normalises the uint8 canvas in its graph unless the views include shrunk ones
    assert batched.input_format == ("nhwc_u8" if (backend, mode) == ("openvino", "hvflip") else "nchw")
    assert batched.backend.batched and not one.backend.batched and f"x{views}batch" in batched.backend.name
    n_one, n_batched = _counted(one), _counted(batched)
    for seed in range(3):
        image = _frame(seed)
        (a, info), (b, _) = one.prepare(image), batched.prepare(image)
        ra, rb = one.infer(a)[0], batched.infer(b)[0]
        assert ra.shape == rb.shape == (len(PRESETS["hvflip-ms" if mode == "ms" else mode].scales), 4 + len(CLASSES), ANCHORS)
        # batch-1 and batch-N kernels round differently, by CPU: up to 2.3e-3 px on AVX2 (Zen 3), so
        # a hundredth of a pixel
        np.testing.assert_allclose(rb, ra, rtol=1e-4, atol=1e-2)
        da, db = one.decode([ra], info), batched.decode([rb], info)
        assert len(da) == len(db)
        np.testing.assert_allclose(db.xyxy, da.xyxy, atol=0.05)
    assert (n_one["n"], n_batched["n"]) == (3 * views, 3)
    one.close(), batched.close()


def test_calibration_feeds_a_view_batch_model_the_views_of_each_image(bundles, tmp_path):
    b12 = load_bundle(bundles["ms-12"])
    views = view_batcher(b12.sidecar)
    assert view_batcher(load_bundle(bundles["ms-1"]).sidecar) is None
    paths = []
    for k in range(3):
        paths.append(tmp_path / f"c{k}.png")
        cv2.imwrite(str(paths[-1]), _frame(10 + k))
    det = Detector(b12, load_backend(b12, "onnxruntime", threads=1))
    batches = CalibrationBatches(b12, paths)  # the TensorRT calibrator's batches
    assert len(batches) == 3 and batches.shape == (12, 3, IMGSZ, IMGSZ)
    for path, got in zip(paths, batches):
        want = views(det.prepare(cv2.imread(str(path)))[0])[0]
        np.testing.assert_array_equal(got, want)
        assert not np.array_equal(got[0], got[1])  # a mirror view, not a copy of the frame
    int8 = pytest.importorskip("defectgate_training.openvino_int8", reason="the [train] extra is not installed")
    x = int8.bundle_transform(b12)(paths[0])  # what NNCF and ONNX Runtime's quantizer calibrate on
    np.testing.assert_array_equal(x, views(det.prepare(cv2.imread(str(paths[0])))[0])[0])
    det.close()


@pytest.mark.parametrize("mode, batch, message", [
    ("hvflip", 3, r"input.batch 3 does not fit the 4 view\(s\) per frame of tta .*batch is 1 or its number of views"),
    ("none", 4, r"input.batch 4 does not fit the 1 view\(s\) per frame"),
    ("hvflip-ms", 4, r"input.batch 4 does not fit the 12 view\(s\)"),
])
def test_a_batch_that_fits_neither_one_view_nor_all_is_refused(tiny_onnx, tmp_path, mode, batch, message):
    root = _bundle(tiny_onnx, tmp_path / "b", "hvflip", 1)
    raw = read_sidecar(root / "model.json").model_dump(mode="json")
    raw["input"]["batch"], raw["output"]["shape"][0], raw["tta"] = batch, batch, PRESETS[mode].model_dump()
    (root / "model.json").write_text(json.dumps(raw))
    with pytest.raises(BundleError, match=message) as err:
        load_bundle(root)
    assert str(root / "model.json") in str(err.value)


def test_the_output_batch_must_match_the_input_batch(tiny_onnx, tmp_path):
    root = _bundle(tiny_onnx, tmp_path / "b", "hvflip", 4)
    raw = read_sidecar(root / "model.json").model_dump(mode="json")
    raw["output"]["shape"][0] = 1
    (root / "model.json").write_text(json.dumps(raw))
    with pytest.raises(BundleError, match=r"output.shape \[1, 8, 84\] has batch 1, input.batch is 4"):
        load_bundle(root)
