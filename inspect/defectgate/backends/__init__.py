"""Backend selection by config name or model file suffix. Heavy engines import lazily."""

from __future__ import annotations

import logging
import platform

from ..bundle import Bundle
from ..errors import BackendError, MissingExtraError
from .base import Backend

log = logging.getLogger(__name__)

NAMES = ("auto", "onnxruntime", "onnxruntime-cuda", "onnxruntime-tensorrt", "openvino", "tensorrt")


def load_backend(bundle: Bundle, name: str = "auto", threads: int = 0) -> Backend:
    """Open `bundle` with the named backend. `auto`: a TensorRT engine runs on TensorRT; an ONNX
    bundle runs on OpenVINO on an x86 CPU where it is installed, else on ONNX Runtime."""
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
    if name == "onnxruntime":
        from .onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(bundle, "cpu", threads)
    if name in ("onnxruntime-cuda", "onnxruntime-tensorrt"):
        from .onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(bundle, name.split("-", 1)[1], threads)
    if name == "openvino":
        from .openvino import OpenVinoBackend  # lazily: raises MissingExtraError with the hint

        return OpenVinoBackend(bundle, threads=threads)
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


__all__ = ["Backend", "load_backend", "NAMES", "MissingExtraError"]
