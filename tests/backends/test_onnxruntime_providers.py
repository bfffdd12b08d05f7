"""ONNX Runtime execution providers: a station asked to run on the GPU runs there or refuses to start.
No GPU exists here; the CPU build of onnxruntime shows the two ways that go wrong on a real station."""

import numpy as np
import pytest

from defectgate.backends import load_backend
from defectgate.bundle import load_bundle
from defectgate.errors import BackendError

ort = pytest.importorskip("onnxruntime")
if "CUDAExecutionProvider" in ort.get_available_providers():
    pytest.skip("onnxruntime-gpu is installed: these tests describe the CPU build", allow_module_level=True)


def test_cpu_backend_runs_on_the_cpu_provider(tiny_bundle):
    backend = load_backend(load_bundle(tiny_bundle), "onnxruntime")
    assert backend.name == "onnxruntime:CPUExecutionProvider"
    h, w = load_bundle(tiny_bundle).sidecar.input.imgsz
    assert np.isfinite(backend.infer(np.zeros((1, 3, h, w), np.float32))[0]).all()


@pytest.mark.parametrize("name, provider", [("onnxruntime-cuda", "CUDAExecutionProvider"),
                                            ("onnxruntime-tensorrt", "TensorrtExecutionProvider")])
def test_gpu_backend_without_onnxruntime_gpu_names_the_extra(tiny_bundle, name, provider):
    with pytest.raises(BackendError, match=rf"provider {provider} is not available .*defectgate\[gpu\]"):
        load_backend(load_bundle(tiny_bundle), name)


def test_provider_that_cannot_start_is_an_error_not_a_silent_cpu_fallback(tiny_bundle, monkeypatch):
    """onnxruntime-gpu lists CUDAExecutionProvider even when libcudart/cuDNN are missing, then quietly
    runs the session on the CPU. The CPU build does the same when told CUDA exists: ORT's real fallback."""
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    with pytest.raises(BackendError, match="could not start CUDAExecutionProvider and fell back to CPUExecutionProvider"):
        load_backend(load_bundle(tiny_bundle), "onnxruntime-cuda")
