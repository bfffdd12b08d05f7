"""Backend selection by config name or model file suffix. Heavy engines import lazily."""

from __future__ import annotations

import logging
import platform

from ..bundle import Bundle
from ..errors import BackendError, BundleError, MissingExtraError
from .base import Backend, open_engines

log = logging.getLogger(__name__)

NAMES = ("auto", "onnxruntime", "onnxruntime-cuda", "onnxruntime-tensorrt", "openvino", "tensorrt")


def load_backend(bundle: Bundle, name: str = "auto", threads: int = 0, compute_precision: str = "f32",
                 streams: int = 1, in_graph_preprocess: bool = False) -> Backend:
    """Open `bundle`'s model file with the named engine: the bare network. The test-time views the
    sidecar declares are the Detector's business (detector.py), like the rest of image -> Detections.
    `auto`: a TensorRT engine runs on TensorRT; an ONNX bundle runs on OpenVINO on an x86 CPU where
    it is installed, else on ONNX Runtime; where this CPU cannot compute in the compute precision asked
    for, OpenVINO computes in f32 (an IR bundle too); when OpenVINO cannot run the bundle here at all
    (the CPU lacks what the bundle needs, the IR is too new, ...) auto falls back to ONNX Runtime. Every
    fallback is logged with its reason.
    `compute_precision` (f32, bf16, f16) is OpenVINO's inference precision for float layers: bf16
    roughly halves CPU time where the CPU has AVX512_BF16/AMX; check the accuracy before using it.
    `streams` > 1 (OpenVINO): that many parallel CPU streams, `infer` callable from as many threads.
    `in_graph_preprocess` (OpenVINO; others ignore it): the engine takes the letterboxed uint8 canvas
    and normalises in its graph; the backend's `input_format` says whether it did."""
    engine = bundle.sidecar.engine
    if name != "auto":
        return _open(bundle, name, threads, compute_precision, streams, in_graph_preprocess)
    if engine == "tensorrt":
        name = "tensorrt"
    elif engine == "openvino":  # an IR runs on OpenVINO only; what auto may still choose is the precision
        backend = _openvino_at_f32_if_need_be(bundle, threads, compute_precision, streams, in_graph_preprocess)
        log.info("backend auto -> %s for %s", backend.name, bundle.model_path.name)
        return backend
    elif platform.machine().lower() in ("x86_64", "amd64") and _has_module("openvino"):
        try:
            backend = _openvino_at_f32_if_need_be(bundle, threads, compute_precision, streams, in_graph_preprocess)
        except (BackendError, BundleError) as exc:
            log.warning("backend auto: openvino cannot run %s here (%s); falling back to onnxruntime",
                        bundle.model_path.name, exc)
            name = "onnxruntime"
            compute_precision, streams = "f32", 1  # OpenVINO settings; ONNX Runtime runs the bundle as it is
        else:
            log.info("backend auto -> openvino for %s", bundle.model_path.name)
            return backend
    else:
        name = "onnxruntime"
    log.info("backend auto -> %s for %s", name, bundle.model_path.name)
    return _open(bundle, name, threads, compute_precision, streams, in_graph_preprocess)


def _openvino_at_f32_if_need_be(bundle: Bundle, threads: int, compute_precision: str, streams: int,
                                in_graph_preprocess: bool) -> Backend:
    """OpenVINO at the compute precision asked for, or, where this CPU cannot compute in it (bf16 on a
    CPU without AVX512_BF16/AMX), at f32, the precision the bundle's gate measured, with a warning: what
    `auto` does rather than refusing the station or leaving OpenVINO for a slower engine."""
    try:
        return _open(bundle, "openvino", threads, compute_precision, streams, in_graph_preprocess)
    except BackendError as exc:
        if compute_precision == "f32":
            raise
        backend = _open(bundle, "openvino", threads, "f32", streams, in_graph_preprocess)
        log.warning("backend auto: openvino cannot compute %s in %s here (%s); computing in f32",
                    bundle.model_path.name, compute_precision, exc)
        return backend


def _open(bundle: Bundle, name: str, threads: int, compute_precision: str, streams: int = 1,
          in_graph_preprocess: bool = False) -> Backend:
    for value, default, what in ((compute_precision, "f32", "compute_precision"), (streams, 1, "streams")):
        if value != default and name != "openvino":
            raise BackendError(f"{what} '{value}' is an OpenVINO setting; backend '{name}' runs "
                               "the bundle's own precision and one stream (export an FP16 or INT8 bundle instead)")
    if name == "onnxruntime":
        from .onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(bundle, "cpu", threads)
    if name in ("onnxruntime-cuda", "onnxruntime-tensorrt"):
        from .onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(bundle, name.split("-", 1)[1], threads)
    if name == "openvino":
        from .openvino import OpenVinoBackend  # lazily: raises MissingExtraError with the hint

        return OpenVinoBackend(bundle, threads=threads, inference_precision=compute_precision, streams=streams,
                               in_graph_preprocess=in_graph_preprocess)
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
