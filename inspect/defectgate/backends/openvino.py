"""OpenVINO backend for x86 CPUs (extra [openvino]).

Opens three kinds of bundle:
- an ONNX bundle (`engine: onnx`): compiles `model.onnx`, or the OpenVINO IR written next to it at
  export (`model.xml` + `model.bin` in the same folder) when the IR records the ONNX file's sha256;
- an OpenVINO bundle (`engine: openvino`, `model.xml` + `model.bin`), e.g. the NNCF INT8 export.

An IR records the sha256 of the ONNX file it was converted from in its rt_info
(`defectgate/source_onnx_sha256`, written by defectgate_training.openvino_int8). A bundle whose IR names
another ONNX than the sidecar does is refused: it would run weights nobody evaluated.

`infer()` is synchronous with the LATENCY hint (one frame at a time, lowest latency); the station
overlaps capture, preprocessing and decoding with it in threads of its own (pipeline.py). An
asynchronous request pool was tried and measured in that pipeline: no gain (issue 20), so it is gone.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..bundle import Bundle, sha256_file
from ..errors import BackendError, BundleError, require
from .base import engine_closed, engine_opened

log = logging.getLogger(__name__)

# Where an IR records the ONNX it came from (rt_info path). Kept here, the reader; the exporter imports it.
RT_INFO_SOURCE_SHA = ["defectgate", "source_onnx_sha256"]
HINTS = ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT")
# Precision of the ops that are not INT8. OpenVINO's own default on CPUs with AVX512_BF16/AMX is bf16,
# which moved boxes of a YOLO11n by pixels against ONNX Runtime here; the station runs what the gate
# measured (f32) unless told otherwise, and the backend name says when it is not f32.
INFERENCE_PRECISIONS = ("f32", "bf16", "f16")


def ir_source_sha(model: Any) -> str:
    """The ONNX sha256 an OpenVINO model records in its rt_info, or '' when it records none."""
    try:
        if model.has_rt_info(RT_INFO_SOURCE_SHA):
            return str(model.get_rt_info(RT_INFO_SOURCE_SHA).astype(str))
    except (RuntimeError, AttributeError):  # older IRs or foreign rt_info layouts: treat as unrecorded
        return ""
    return ""


def _ir_pair(xml: Path) -> Path:
    bin_path = xml.with_suffix(".bin")
    if not bin_path.is_file():
        raise BundleError(f"{xml}: OpenVINO IR weights file {bin_path.name} is missing next to it; re-export the bundle")
    return bin_path


class OpenVinoBackend:
    """`OpenVinoBackend(bundle, threads=0, hint="LATENCY")`; `.name` is engine:device:precision, e.g.
    "openvino:CPU:int8", or "openvino:CPU:fp32+bf16" when the other ops run in bf16."""

    def __init__(self, bundle: Bundle, threads: int = 0, hint: str = "LATENCY", device: str = "CPU",
                 inference_precision: str = "f32"):
        ov = require("openvino", "openvino", "the openvino backend")
        if hint not in HINTS:
            raise BackendError(f"openvino hint '{hint}' is unknown; use one of {', '.join(HINTS)}")
        if inference_precision not in INFERENCE_PRECISIONS:
            raise BackendError(
                f"openvino inference_precision '{inference_precision}' is unknown; use one of {', '.join(INFERENCE_PRECISIONS)}"
            )
        if threads < 0:
            raise BackendError(f"openvino threads = {threads}; use 0 (all cores) or a positive count")
        self.bundle = bundle
        self._ov = ov
        self.core = ov.Core()
        if device not in self.core.available_devices:
            raise BackendError(
                f"OpenVINO device '{device}' is not available on this machine (have {self.core.available_devices}); "
                "OpenVINO's CPU plugin needs an x86-64 CPU with SSE4.2 or an ARM64 CPU: use backend onnxruntime here"
            )
        model, self.model_file = self._read_model(bundle)
        self.precision = bundle.sidecar.precision
        self._check_instruction_set(device)
        self._check_input(model)
        config: dict[str, Any] = {"PERFORMANCE_HINT": hint, "INFERENCE_PRECISION_HINT": inference_precision}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        try:
            self.compiled = self.core.compile_model(model, device, config)
        except RuntimeError as exc:
            raise BackendError(f"{self.model_file}: OpenVINO could not compile the model for {device}: {exc}") from exc
        self.request = self.compiled.create_infer_request()
        self.output_names = [o.get_any_name() for o in self.compiled.outputs]
        self.inference_precision = inference_precision
        suffix = "" if inference_precision == "f32" else f"+{inference_precision}"
        self.name = f"openvino:{device}:{self.precision}{suffix}"
        self.hint = hint
        log.info("openvino %s compiled %s (%s, hint %s, threads %s)", ov.__version__, self.model_file.name,
                 self.precision, hint, threads or "all")
        engine_opened(self)

    # -- loading -----------------------------------------------------------------------------------
    def _read_model(self, bundle: Bundle) -> tuple[Any, Path]:
        sc = bundle.sidecar
        if sc.engine == "onnx":
            sibling = bundle.root / "model.xml"
            if sibling.is_file():
                model = self._read(sibling)
                recorded = ir_source_sha(model)
                if recorded != sc.sha256:
                    raise BundleError(
                        f"{sibling}: this OpenVINO IR was converted from an ONNX with sha256 {recorded[:12] or 'unknown'}…, "
                        f"the bundle's {sc.model_file} is {sc.sha256[:12]}…; delete the stale model.xml/.bin "
                        "or re-export the IR"
                    )
                return model, sibling
            return self._read(bundle.model_path), bundle.model_path
        if sc.engine == "openvino":
            xml = bundle.model_path
            if xml.suffix != ".xml":
                raise BundleError(f"{bundle.root / 'model.json'}: an openvino bundle's model_file must be an .xml IR, got '{sc.model_file}'")
            bin_path = _ir_pair(xml)
            want_bin = sc.engine_info.get("weights_sha256")
            if want_bin and sha256_file(bin_path) != want_bin:
                raise BundleError(
                    f"{bin_path}: sha256 does not match engine_info.weights_sha256 in the sidecar; "
                    "the IR weights were changed or mixed up: re-export the bundle"
                )
            model = self._read(xml)
            recorded = ir_source_sha(model)
            if sc.source_onnx_sha256 and recorded and recorded != sc.source_onnx_sha256:
                raise BundleError(
                    f"{xml}: the IR records source ONNX sha256 {recorded[:12]}…, the sidecar's source_onnx_sha256 is "
                    f"{sc.source_onnx_sha256[:12]}…; the IR and sidecar come from different exports: re-export"
                )
            onnx_copy = bundle.root / "model.onnx"
            if sc.source_onnx_sha256 and onnx_copy.is_file() and sha256_file(onnx_copy) != sc.source_onnx_sha256:
                raise BundleError(
                    f"{onnx_copy}: sha256 does not match the sidecar's source_onnx_sha256 "
                    f"{sc.source_onnx_sha256[:12]}…; this IR was not converted from that ONNX: re-export"
                )
            return model, xml
        raise BackendError(
            f"{bundle.model_path}: the openvino backend runs ONNX or OpenVINO IR bundles, this one is "
            f"'{sc.engine}'; use backend tensorrt (or auto) for TensorRT engines"
        )

    def _read(self, path: Path) -> Any:
        try:
            return self.core.read_model(str(path))
        except RuntimeError as exc:
            raise BackendError(f"{path}: OpenVINO could not read the model: {exc}") from exc

    def _check_instruction_set(self, device: str) -> None:
        """An INT8 model on a CPU without INT8 support (no AVX2/VNNI class instructions) would run, if at
        all, slower than FP32: refuse it with the FP32 alternative instead."""
        if self.precision != "int8":
            return
        try:
            caps = list(self.core.get_property(device, "OPTIMIZATION_CAPABILITIES"))
        except RuntimeError:
            return
        if "INT8" not in caps:
            raise BackendError(
                f"{self.bundle.model_path}: this {device} lacks the instruction set for INT8 inference "
                f"(OpenVINO reports {caps}); run the FP32 bundle instead"
            )

    def _check_input(self, model: Any) -> None:
        spec = self.bundle.sidecar.input
        inputs = model.inputs
        if len(inputs) != 1:
            raise BackendError(f"{self.model_file}: expected one input, the model has {len(inputs)}")
        names = inputs[0].get_names()
        if spec.name not in names:
            raise BackendError(f"{self.model_file}: model input is {sorted(names)}, the sidecar says '{spec.name}'")
        shape = inputs[0].get_partial_shape()
        if shape.is_static:
            dims = [int(d) for d in shape.to_shape()]
            want = [spec.batch, 3, *spec.imgsz]
            if dims != want:
                raise BundleError(
                    f"{self.model_file}: model input shape {dims} does not match the sidecar's {want} "
                    "(input.batch, 3, input.imgsz); the sidecar does not belong to this model"
                )

    # -- synchronous ---------------------------------------------------------------------------------
    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        """Run one preprocessed NCHW batch. The input is shared, not copied; outputs are copies the
        caller may keep."""
        if batch.dtype != np.float32:
            batch = batch.astype(np.float32)
        try:
            result = self.request.infer({0: batch}, share_inputs=True, share_outputs=True)
        except RuntimeError as exc:
            raise BackendError(f"openvino inference failed: {exc}") from exc
        # Shared outputs are views into the request's buffers; copy so the next infer can't change them.
        return [np.array(result[i], copy=True) for i in range(len(self.output_names))]

    def close(self) -> None:
        self.request = None
        self.compiled = None
        engine_closed(self)
