"""Native TensorRT backend (extras [gpu] / [jetson]; on a Jetson, TensorRT comes with JetPack).

Loads a `model.engine` bundle written by `defectgate engine build`. Buffers are allocated once: pinned
host memory and device memory per I/O tensor; each `infer` is an async host-to-device copy, an
`execute_async_v3`, async device-to-host copies, all on one CUDA stream, then one synchronize.

An engine is only valid for the TensorRT version and GPU it was built with. The sidecar's
`engine_info` records both and this backend refuses a mismatch before TensorRT gets to fail (which it
does with a terse deserialization error or, worse, on the first inference).
"""

from __future__ import annotations

import ctypes
import logging
from typing import Any

import numpy as np

from ..bundle import Bundle
from ..engine_build import gpu_identity, import_cudart
from ..errors import BackendError, BundleError, require
from .base import engine_closed, engine_opened

log = logging.getLogger(__name__)


def check_engine_compat(engine_info: dict[str, Any], tensorrt_version: str, gpu_name: str, capability: str,
                        where: str = "model.engine") -> None:
    """Refuse an engine built for another TensorRT version or GPU. Pure: testable without a GPU."""
    built_trt = str(engine_info.get("tensorrt_version", ""))
    built_gpu = str(engine_info.get("gpu_name", ""))
    built_cc = str(engine_info.get("compute_capability", ""))
    if not built_trt or not built_gpu:
        raise BundleError(
            f"{where}: the sidecar's engine_info does not record tensorrt_version and gpu_name; "
            "rebuild the engine on this device with 'defectgate engine build'"
        )
    if built_trt != tensorrt_version:
        raise BundleError(
            f"{where}: engine built with TensorRT {built_trt}, this device has TensorRT {tensorrt_version}; "
            "engines do not carry across TensorRT versions: rebuild it here with 'defectgate engine build'"
        )
    if built_gpu != gpu_name or (built_cc and built_cc != capability):
        raise BundleError(
            f"{where}: engine built for GPU '{built_gpu}' (sm {built_cc or '?'}), this device is '{gpu_name}' "
            f"(sm {capability}); rebuild it here with 'defectgate engine build'"
        )


class _Binding:
    """One I/O tensor: its pinned host array and device pointer, allocated once."""

    def __init__(self, cudart: Any, name: str, shape: tuple[int, ...], dtype: np.dtype, is_input: bool):
        self.name, self.shape, self.dtype, self.is_input = name, shape, np.dtype(dtype), is_input
        self.nbytes = int(np.prod(shape)) * self.dtype.itemsize
        err, self.host_ptr = cudart.cudaMallocHost(self.nbytes)
        _check(cudart, err, f"cudaMallocHost for '{name}'")
        buf = (ctypes.c_byte * self.nbytes).from_address(int(self.host_ptr))
        self.host = np.frombuffer(buf, dtype=self.dtype).reshape(shape)
        err, self.device = cudart.cudaMalloc(self.nbytes)
        _check(cudart, err, f"cudaMalloc for '{name}'")

    def free(self, cudart: Any) -> None:
        if self.device is not None:
            cudart.cudaFree(self.device)
            self.device = None
        if self.host_ptr is not None:
            self.host = None
            cudart.cudaFreeHost(self.host_ptr)
            self.host_ptr = None


class TensorRTBackend:
    """`TensorRTBackend(bundle)`; `.name` is e.g. "tensorrt:Orin:fp16"."""

    def __init__(self, bundle: Bundle, device: int = 0):
        sc = bundle.sidecar
        if sc.engine != "tensorrt":
            raise BackendError(
                f"{bundle.model_path}: the tensorrt backend runs engine bundles, this one is '{sc.engine}'; "
                "build one with 'defectgate engine build', or use backend onnxruntime-tensorrt for an ONNX bundle"
            )
        trt = require("tensorrt", "gpu", "the tensorrt backend")
        cudart = import_cudart()
        self._trt, self._cudart = trt, cudart
        gpu_name, capability = gpu_identity(cudart, device)
        check_engine_compat(sc.engine_info, trt.__version__, gpu_name, capability, str(bundle.model_path))
        (err,) = cudart.cudaSetDevice(device)
        _check(cudart, err, f"cudaSetDevice({device})")

        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(bundle.model_path.read_bytes())
        if self.engine is None:
            raise BundleError(f"{bundle.model_path}: TensorRT could not deserialize the engine; rebuild it on this device")
        self.context = self.engine.create_execution_context()
        err, self.stream = cudart.cudaStreamCreate()
        _check(cudart, err, "cudaStreamCreate")

        self.inputs: list[_Binding] = []
        self.outputs: list[_Binding] = []
        spec = sc.input
        try:
            for i in range(self.engine.num_io_tensors):
                name = self.engine.get_tensor_name(i)
                is_input = self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
                shape = tuple(self.engine.get_tensor_shape(name))
                if is_input and any(d < 0 for d in shape):  # dynamic engine: fix it to the sidecar's shape
                    shape = (spec.batch, 3, *spec.imgsz)
                    self.context.set_input_shape(name, shape)
                elif not is_input:
                    shape = tuple(self.context.get_tensor_shape(name))
                binding = _Binding(cudart, name, shape, trt.nptype(self.engine.get_tensor_dtype(name)), is_input)
                self.context.set_tensor_address(name, int(binding.device))
                (self.inputs if is_input else self.outputs).append(binding)
        except BaseException:
            self.close()
            raise
        if len(self.inputs) != 1 or self.inputs[0].name != spec.name:
            names = [b.name for b in self.inputs]
            self.close()
            raise BundleError(f"{bundle.model_path}: engine inputs {names}, the sidecar says '{spec.name}'")
        want = (spec.batch, 3, *spec.imgsz)
        if self.inputs[0].shape != want:
            got = self.inputs[0].shape
            self.close()
            raise BundleError(f"{bundle.model_path}: engine input shape {got} does not match the sidecar's {want}")
        self.precision = sc.precision
        self.gpu_name = gpu_name
        self.name = f"tensorrt:{gpu_name}:{sc.precision}"
        engine_opened(self)
        log.info("tensorrt %s loaded %s on %s (sm %s)", trt.__version__, bundle.model_path.name, gpu_name, capability)

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        cudart, inp = self._cudart, self.inputs[0]
        if batch.shape != inp.shape:
            raise BackendError(f"tensorrt input shape {batch.shape} differs from the engine's {inp.shape}")
        np.copyto(inp.host, batch, casting="same_kind")  # into pinned memory: the copy below is truly async
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        (err,) = cudart.cudaMemcpyAsync(inp.device, inp.host_ptr, inp.nbytes, h2d, self.stream)
        _check(cudart, err, "host-to-device copy")
        if not self.context.execute_async_v3(int(self.stream)):
            raise BackendError("tensorrt execute_async_v3 failed (see the TensorRT messages above)")
        for out in self.outputs:
            (err,) = cudart.cudaMemcpyAsync(out.host_ptr, out.device, out.nbytes, d2h, self.stream)
            _check(cudart, err, "device-to-host copy")
        (err,) = cudart.cudaStreamSynchronize(self.stream)
        _check(cudart, err, "stream synchronize")
        return [out.host.copy() for out in self.outputs]  # the pinned buffers are reused next call

    def close(self) -> None:
        cudart = getattr(self, "_cudart", None)
        if cudart is None:
            return
        for b in (*getattr(self, "inputs", []), *getattr(self, "outputs", [])):
            b.free(cudart)
        self.inputs, self.outputs = [], []
        if getattr(self, "stream", None) is not None:
            cudart.cudaStreamDestroy(self.stream)
            self.stream = None
        self.context = None
        self.engine = None
        engine_closed(self)


def _check(cudart: Any, err: Any, what: str) -> None:
    if int(err) != 0:
        raise BackendError(f"CUDA {what} failed: {cudart.cudaGetErrorString(err)[1].decode()}")
