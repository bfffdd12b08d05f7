"""Backend selection by config name or model file suffix. Heavy engines import lazily."""

from __future__ import annotations

import logging
import platform

from ..bundle import Bundle
from ..errors import BackendError, MissingExtraError
from .base import Backend, open_engines

log = logging.getLogger(__name__)

NAMES = ("auto", "onnxruntime", "onnxruntime-cuda", "onnxruntime-tensorrt", "openvino", "tensorrt")


def load_backend(bundle: Bundle, name: str = "auto", threads: int = 0, compute_precision: str = "f32") -> Backend:
    """Open `bundle`'s model file with the named engine: the bare network. The test-time views the
    sidecar declares are the Detector's business (detector.py), like the rest of image -> Detections.
    `auto`: a TensorRT engine runs on TensorRT; an ONNX bundle runs on OpenVINO on an x86 CPU where
    it is installed, else on ONNX Runtime.
    `compute_precision` (f32, bf16, f16) is OpenVINO's inference precision for float layers: bf16
    roughly halves CPU time where the CPU has AVX512_BF16/AMX; check the accuracy before using it."""
    engine = bundle.sidecar.engine
    if name == "auto":
        if engine == "tensorrt":
            name = "tensorrt"
        elif engine == "openvino":
            name = "openvino"
        elif platform.machine().lower() in ("x86_64", "amd64") and _has_module("openvino"):
            name = "openvino"
        else:
            name = "onnxruntime"
        log.info("backend auto -> %s for %s", name, bundle.model_path.name)
    return _open(bundle, name, threads, compute_precision)


def _open(bundle: Bundle, name: str, threads: int, compute_precision: str) -> Backend:
    if compute_precision != "f32" and name != "openvino":
        raise BackendError(f"compute_precision '{compute_precision}' is an OpenVINO setting; backend '{name}' runs "
                           "the bundle's own precision (export an FP16 or INT8 bundle instead)")
    if name == "onnxruntime":
        from .onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(bundle, "cpu", threads)
    if name in ("onnxruntime-cuda", "onnxruntime-tensorrt"):
        from .onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(bundle, name.split("-", 1)[1], threads)
    if name == "openvino":
        from .openvino import OpenVinoBackend  # lazily: raises MissingExtraError with the hint

        return OpenVinoBackend(bundle, threads=threads, inference_precision=compute_precision)
    if name == "tensorrt":
        from .tensorrt import TensorRTBackend

        return TensorRTBackend(bundle)
    raise BackendError(f"backend '{name}' is unknown; use one of {', '.join(NAMES)}")


def _has_module(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


__all__ = ["Backend", "load_backend", "open_engines", "NAMES", "MissingExtraError"]
