"""TensorRT engine build and backend.

CPU part (always runs): the engine/GPU compatibility check, calibration batching through the bundle's
preprocessing, the entropy calibrator's batch protocol (over a host-memory stand-in for the CUDA
runtime, since no GPU exists here), and the errors a user sees without TensorRT or a GPU.
GPU part (marked gpu): builds real engines and compares them with ONNX Runtime; skipped unless
tensorrt and an NVIDIA GPU are present."""

from __future__ import annotations

import ctypes
import importlib.util
import json
import shutil
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
from tinyyolo import part_images

from defectgate import engine_build
from defectgate.backends import load_backend
from defectgate.backends.tensorrt import TensorRTBackend, check_engine_compat
from defectgate.bundle import load_bundle, sha256_file
from defectgate.errors import BackendError, BundleError, DatasetError, MissingExtraError
from defectgate.preprocess import Preprocessor

INFO = {"tensorrt_version": "10.3.0", "gpu_name": "Orin", "compute_capability": "8.7", "precision": "fp16"}


def test_compatible_engine_passes():
    check_engine_compat(INFO, "10.3.0", "Orin", "8.7")


@pytest.mark.parametrize(
    ("trt", "gpu", "cc", "message"),
    [
        ("10.7.0", "Orin", "8.7", "engine built with TensorRT 10.3.0, this device has TensorRT 10.7.0"),
        ("10.3.0", "NVIDIA H100 80GB HBM3", "9.0", "engine built for GPU 'Orin' \\(sm 8.7\\), this device is 'NVIDIA H100"),
        ("10.3.0", "Orin", "8.6", "sm 8.6"),
    ],
)
def test_engine_for_another_tensorrt_or_gpu_is_refused_with_the_fix(trt, gpu, cc, message):
    with pytest.raises(BundleError, match=message) as err:
        check_engine_compat(INFO, trt, gpu, cc, "b/model.engine")
    assert "defectgate engine build" in str(err.value) and "b/model.engine" in str(err.value)


def test_engine_without_build_record_is_refused():
    with pytest.raises(BundleError, match="does not record tensorrt_version and gpu_name"):
        check_engine_compat({"precision": "fp16"}, "10.3.0", "Orin", "8.7")


# -- calibration ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def calib(tmp_path_factory) -> Path:
    return part_images(tmp_path_factory.mktemp("trt_calib") / "images", 5, seed=3)


def test_calibration_batches_are_the_bundles_own_preprocessing(tiny_bundle, calib):
    bundle = load_bundle(tiny_bundle)
    images = engine_build.calibration_images(calib)
    batches = engine_build.CalibrationBatches(bundle, images, batch_size=2)
    assert len(batches) == 2  # 5 images -> two full batches, the partial one is dropped
    pre = Preprocessor(bundle.sidecar.input)
    seen = 0
    for k, batch in enumerate(batches):
        assert batch.shape == (2, 3, 64, 64) and batch.dtype == np.float32 and batch.flags.c_contiguous
        for j in range(2):
            want = pre(cv2.imread(str(images[2 * k + j])))[0][0]
            np.testing.assert_array_equal(batch[j], want)
            seen += 1
    assert seen == 4
    assert batches.nbytes == 2 * 3 * 64 * 64 * 4


def test_fewer_images_than_a_batch_is_an_error(tiny_bundle, calib):
    with pytest.raises(DatasetError, match="fewer than one batch of 8"):
        engine_build.CalibrationBatches(load_bundle(tiny_bundle), engine_build.calibration_images(calib), batch_size=8)


class HostCudart:
    """Stand-in for cuda-python's runtime with host memory (no GPU here): enough of cudaMalloc,
    cudaMemcpy and cudaFree to drive the calibrator's buffer protocol."""

    class cudaMemcpyKind:  # noqa: N801 - mirrors cuda-python's name
        cudaMemcpyHostToDevice = 1

    def __init__(self):
        self.buffers: dict[int, ctypes.Array] = {}
        self.freed: list[int] = []

    def cudaMalloc(self, n):  # noqa: N802
        buf = (ctypes.c_byte * n)()
        self.buffers[ctypes.addressof(buf)] = buf
        return 0, ctypes.addressof(buf)

    def cudaMemcpy(self, dst, src, n, kind):  # noqa: N802
        ctypes.memmove(dst, src, n)
        return (0,)

    def cudaFree(self, ptr):  # noqa: N802
        self.freed.append(ptr)
        return (0,)

    def cudaGetErrorString(self, err):  # noqa: N802
        return 0, b"error"


def test_entropy_calibrator_feeds_every_batch_then_ends(tiny_bundle, calib):
    fake_trt = types.SimpleNamespace(IInt8EntropyCalibrator2=type("IInt8EntropyCalibrator2", (), {"__init__": lambda self: None}))
    cudart = HostCudart()
    batches = engine_build.CalibrationBatches(load_bundle(tiny_bundle), engine_build.calibration_images(calib), batch_size=1)
    cal = engine_build.make_entropy_calibrator(fake_trt, cudart, batches)
    assert cal.get_batch_size() == 1
    assert cal.read_calibration_cache() is None  # never reuse a stale cache
    expected = [b.copy() for b in engine_build.CalibrationBatches(load_bundle(tiny_bundle), batches.images, 1)]
    for want in expected:
        ptrs = cal.get_batch(["images"])
        assert len(ptrs) == 1
        got = np.frombuffer(cudart.buffers[ptrs[0]], dtype=np.float32).reshape(want.shape)
        np.testing.assert_array_equal(got, want)
    assert cal.get_batch(["images"]) is None
    assert cal.batches_done == 5
    cal.free()
    assert cudart.freed and cal._device is None


# -- errors without TensorRT or a GPU -----------------------------------------------------------------------
def test_engine_build_checks_inputs_before_needing_a_gpu(tiny_bundle, tmp_path):
    with pytest.raises(DatasetError, match="INT8 needs calibration images"):
        engine_build.build_engine(tiny_bundle, "int8")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="no calibration images"):
        engine_build.build_engine(tiny_bundle, "int8", empty)
    with pytest.raises(BackendError, match="precision 'int4' is unknown"):
        engine_build.build_engine(tiny_bundle, "int4")


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is installed here")
def test_without_tensorrt_build_and_backend_name_the_gpu_extra(tiny_bundle, tmp_path, monkeypatch):
    with pytest.raises(MissingExtraError, match=r"defectgate\[gpu\]"):
        engine_build.build_engine(tiny_bundle, "fp16", out_dir=tmp_path / "e")
    engine = _fake_engine_bundle(tiny_bundle, tmp_path / "engine")
    with pytest.raises(MissingExtraError, match=r"defectgate\[gpu\]"):
        load_backend(load_bundle(engine), "auto")  # auto picks tensorrt for an engine bundle


def test_cli_engine_build_prints_one_line_errors(tiny_bundle, capsys):
    from defectgate.cli import main

    assert main(["engine", "build", "--bundle", str(tiny_bundle), "--precision", "int8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["defectgate engine: error: INT8 needs calibration images: pass --calib DIR (e.g. the dataset's train/images)"]


def test_tensorrt_backend_refuses_an_onnx_bundle(tiny_bundle):
    with pytest.raises(BackendError, match="runs engine bundles, this one is 'onnx'"):
        TensorRTBackend(load_bundle(tiny_bundle))


def test_gpu_identity_without_a_gpu_says_what_to_use_instead():
    pytest.importorskip("cuda.bindings", reason="cuda-python is not installed")
    from cuda.bindings import runtime as cudart

    err, count = cudart.cudaGetDeviceCount()
    if int(err) == 0 and count:
        pytest.skip("a GPU is present")
    with pytest.raises(BackendError, match="no usable NVIDIA GPU .*use backend onnxruntime or openvino"):
        engine_build.gpu_identity(cudart)


def _fake_engine_bundle(src: Path, root: Path) -> Path:
    """An engine bundle whose model file is not a real engine: enough to test what happens before
    TensorRT reads it."""
    root.mkdir(parents=True)
    (root / "model.engine").write_bytes(b"not an engine")
    sidecar = json.loads((src / "model.json").read_text())
    sidecar.update(model_file="model.engine", sha256=sha256_file(root / "model.engine"), engine="tensorrt",
                   precision="fp16", engine_info=INFO)
    (root / "model.json").write_text(json.dumps(sidecar))
    return root


# -- on a real GPU ------------------------------------------------------------------------------------------
def _gpu_ready() -> bool:
    if importlib.util.find_spec("tensorrt") is None or importlib.util.find_spec("cuda") is None:
        return False
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        return False
    err, count = cudart.cudaGetDeviceCount()
    return int(err) == 0 and bool(count)


gpu = pytest.mark.skipif(not _gpu_ready(), reason="needs tensorrt, cuda-python and an NVIDIA GPU")


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize(("precision", "box_tol", "score_tol"), [("fp32", 0.05, 1e-3), ("fp16", 1.0, 0.02)])
def test_engine_matches_onnxruntime(tiny_bundle, calib, tmp_path, precision, box_tol, score_tol):
    built = engine_build.build_engine(tiny_bundle, precision, out_dir=tmp_path / precision)
    assert (tmp_path / "tensorrt-timing.cache").stat().st_size > 0
    bundle = load_bundle(built.bundle_dir)
    assert bundle.sidecar.engine_info["precision"] == precision
    trt = load_backend(bundle, "auto")
    ort = load_backend(load_bundle(tiny_bundle), "onnxruntime")
    assert trt.name.startswith("tensorrt:") and trt.name.endswith(precision)
    pre = Preprocessor(bundle.sidecar.input)
    for path in sorted(calib.glob("*.png")):
        x = pre(cv2.imread(str(path)))[0]
        a, r = trt.infer(x)[0], ort.infer(x)[0]
        assert np.abs(a[0, :4] - r[0, :4]).max() < box_tol
        assert np.abs(a[0, 4:] - r[0, 4:]).max() < score_tol
    trt.close()


@pytest.mark.gpu
@gpu
def test_int8_engine_records_its_calibration_and_runs(tiny_bundle, calib, tmp_path):
    built = engine_build.build_engine(tiny_bundle, "int8", calib, out_dir=tmp_path / "int8")
    info = load_bundle(built.bundle_dir).sidecar.engine_info
    assert info["calibration"]["fingerprint"] == engine_build.calibration_fingerprint(
        engine_build.calibration_images(calib), calib)
    backend = load_backend(load_bundle(built.bundle_dir), "tensorrt")
    out = backend.infer(np.zeros((1, 3, 64, 64), np.float32))[0]
    assert np.isfinite(out).all()


@pytest.mark.gpu
@gpu
def test_real_engine_with_another_tensorrt_version_is_refused(tiny_bundle, tmp_path):
    built = engine_build.build_engine(tiny_bundle, "fp16", out_dir=tmp_path / "e")
    moved = tmp_path / "moved"
    shutil.copytree(built.bundle_dir, moved)
    sidecar = json.loads((moved / "model.json").read_text())
    sidecar["engine_info"]["tensorrt_version"] = "8.6.1"
    (moved / "model.json").write_text(json.dumps(sidecar))
    with pytest.raises(BundleError, match="engine built with TensorRT 8.6.1"):
        TensorRTBackend(load_bundle(moved))

