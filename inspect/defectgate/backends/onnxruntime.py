"""ONNX Runtime backend: CPU by default, CUDA / TensorRT execution providers when asked for and
available (onnxruntime-gpu, extra [gpu])."""

from __future__ import annotations

import numpy as np

from ..bundle import Bundle
from ..errors import BackendError
from .base import engine_closed, engine_opened

PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


class OnnxRuntimeBackend:
    def __init__(self, bundle: Bundle, device: str = "cpu", threads: int = 0):
        import onnxruntime as ort

        if bundle.sidecar.engine != "onnx":
            raise BackendError(f"{bundle.model_path}: onnxruntime runs .onnx bundles, this one is '{bundle.sidecar.engine}'")
        if device not in PROVIDERS:
            raise BackendError(f"onnxruntime device '{device}' is unknown; use one of {sorted(PROVIDERS)}")
        wanted = PROVIDERS[device]
        available = ort.get_available_providers()
        if wanted[0] not in available:
            raise BackendError(
                f"onnxruntime provider {wanted[0]} is not available (have {available}); "
                "install onnxruntime-gpu with: pip install 'defectgate[gpu]'"
            )
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        providers = [(p, _provider_options(p, bundle)) for p in wanted if p in available]
        try:
            self.session = ort.InferenceSession(str(bundle.model_path), sess_options=opts, providers=providers)
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph types; report them uniformly
            raise BackendError(f"{bundle.model_path}: onnxruntime could not load the model: {exc}") from exc
        running = self.session.get_providers()[0]
        if running != wanted[0]:  # ORT falls back to the next provider silently when one cannot start
            raise BackendError(
                f"{bundle.model_path}: onnxruntime could not start {wanted[0]} and fell back to {running}; "
                "are the CUDA/cuDNN libraries onnxruntime-gpu needs on the library path? (docs/jetson.md)")
        inputs = self.session.get_inputs()
        expected = bundle.sidecar.input.name
        if inputs[0].name != expected:
            raise BackendError(
                f"{bundle.model_path}: model input is '{inputs[0].name}', the sidecar says '{expected}'"
            )
        self.input_name = inputs[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.name = f"onnxruntime:{self.session.get_providers()[0]}"
        self.input_dtype = np.float16 if "float16" in inputs[0].type else np.float32
        engine_opened(self)

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        if batch.dtype != self.input_dtype:
            batch = batch.astype(self.input_dtype)
        try:
            return self.session.run(self.output_names, {self.input_name: batch})
        except Exception as exc:
            raise BackendError(f"onnxruntime inference failed: {exc}") from exc

    def close(self) -> None:
        self.session = None
        engine_closed(self)


def _provider_options(provider: str, bundle: Bundle) -> dict[str, object]:
    """The TensorRT EP builds an engine at session start (minutes on a Jetson); cache it, and its
    timing cache, per model under DEFECTGATE_CACHE (default ~/.cache/defectgate) so restarts are fast.
    ORT keys the cached engine by model and GPU; clear the folder after a TensorRT upgrade."""
    if provider != "TensorrtExecutionProvider":
        return {}
    import os
    from pathlib import Path

    root = Path(os.environ.get("DEFECTGATE_CACHE", Path.home() / ".cache" / "defectgate"))
    cache = root / "ort-tensorrt" / bundle.sidecar.sha256[:16]
    cache.mkdir(parents=True, exist_ok=True)
    return {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache),
            "trt_timing_cache_enable": True, "trt_timing_cache_path": str(cache)}
