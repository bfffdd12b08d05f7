"""OpenVINO backend for x86 CPUs (extra [openvino]).

Opens three kinds of bundle:
- an ONNX bundle (`engine: onnx`): compiles `model.onnx`, or the OpenVINO IR written next to it at
  export (`model.xml` + `model.bin` in the same folder) when the IR records the ONNX file's sha256;
- an OpenVINO bundle (`engine: openvino`, `model.xml` + `model.bin`), e.g. the NNCF INT8 export.

An IR records the sha256 of the ONNX file it was converted from in its rt_info
(`defectgate/source_onnx_sha256`, written by defectgate_training.openvino_int8). A bundle whose IR names
another ONNX than the sidecar does is refused: it would run weights nobody evaluated.

Preprocessing in the graph (`in_graph_preprocess`, what the Detector asks for): OpenVINO's
PrePostProcessor turns the letterboxed BGR canvas, (N, H, W, 3) uint8, into the network's normalised
RGB NCHW float input inside the compiled model, so the station's CPU side is the resize alone.

Streams: `streams=1` is the LATENCY hint, one request using every core. `streams=N` compiles N CPU
streams (each with its share of the threads) and keeps one infer request per stream; `infer()` is
then safe to call from N threads at once (`concurrency`), which the station does (pipeline.py). On the
2-core machine of issue 22 two single-thread streams spent 26 % less CPU per frame than one
two-thread stream (its threads wait for each other at every layer, and for any core another thread
holds): more frames per second, each one slower.
"""

from __future__ import annotations

import logging
import queue
import re
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
# what OPTIMIZATION_CAPABILITIES must list for a precision to run natively, and the instructions behind it
NEEDS = {"int8": ("INT8", "INT8 instructions (AVX2 or better)"), "bf16": ("BF16", "AVX512_BF16 or AMX"),
         "f16": ("FP16", "AVX512_FP16 or AMX-FP16")}


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
                 inference_precision: str = "f32", streams: int = 1, in_graph_preprocess: bool = False):
        ov = require("openvino", "openvino", "the openvino backend")
        if hint not in HINTS:
            raise BackendError(f"openvino hint '{hint}' is unknown; use one of {', '.join(HINTS)}")
        if inference_precision not in INFERENCE_PRECISIONS:
            raise BackendError(
                f"openvino inference_precision '{inference_precision}' is unknown; use one of {', '.join(INFERENCE_PRECISIONS)}"
            )
        if threads < 0:
            raise BackendError(f"openvino threads = {threads}; use 0 (all cores) or a positive count")
        if streams < 1:
            raise BackendError(f"openvino streams = {streams}; use 1 (lowest latency) or more (throughput)")
        self.bundle = bundle
        self._ov = ov
        self.core = ov.Core()
        if device not in self.core.available_devices:
            raise BackendError(
                f"OpenVINO device '{device}' is not available on this machine (have {self.core.available_devices}); "
                "OpenVINO's CPU plugin needs an x86-64 CPU with SSE4.2 or an ARM64 CPU: use backend onnxruntime here"
            )
        self.precision = bundle.sidecar.precision
        self._check_instruction_set(device, inference_precision)
        model, self.model_file = self._read_model(bundle)
        self._check_input(model)
        self.input_format = "nhwc_u8" if in_graph_preprocess else "nchw"
        if in_graph_preprocess:
            model = _preprocess_in_graph(ov, model, bundle.sidecar.input)
        config: dict[str, Any] = {"PERFORMANCE_HINT": hint, "INFERENCE_PRECISION_HINT": inference_precision}
        if streams > 1:
            config.update({"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": str(streams)})
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        try:
            self.compiled = self.core.compile_model(model, device, config)
        except RuntimeError as exc:
            raise BackendError(f"{self.model_file}: OpenVINO could not compile the model for {device}: {exc}") from exc
        self.concurrency = streams
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        for _ in range(streams):
            self._requests.put(self.compiled.create_infer_request())
        self.output_names = [o.get_any_name() for o in self.compiled.outputs]
        self.inference_precision = inference_precision
        suffix = "" if inference_precision == "f32" else f"+{inference_precision}"
        self.name = f"openvino:{device}:{self.precision}{suffix}" + (f":{streams}streams" if streams > 1 else "")
        self.hint = config["PERFORMANCE_HINT"]
        log.info("openvino %s compiled %s (%s, hint %s, streams %d, threads %s, input %s)", ov.__version__,
                 self.model_file.name, self.precision, self.hint, streams, threads or "all", self.input_format)
        engine_opened(self)

    # -- loading -----------------------------------------------------------------------------------
    def _read_model(self, bundle: Bundle) -> tuple[Any, Path]:
        sc = bundle.sidecar
        if sc.engine == "onnx":
            sibling = bundle.root / "model.xml"
            newer = sibling.is_file() and _newer_than_installed(ir_writer_version(sibling), ov_version(self._ov))
            if newer:  # the ONNX is the bundle's model; the IR beside it is only a start-up shortcut
                log.warning("%s was written by OpenVINO %s, newer than this %s: converting %s instead",
                            sibling, ir_writer_version(sibling), ov_version(self._ov), sc.model_file)
            if sibling.is_file() and not newer:
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
            self._check_writer_version(xml)
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

    def _check_instruction_set(self, device: str, compute: str) -> None:
        """An INT8 model, or bf16/f16 compute, on a CPU without the instructions for it would run, if at
        all, emulated and slower than FP32: refuse it and name the alternative."""
        caps = None
        for wanted, alternative in ((self.precision, "run the FP32 bundle instead"),
                                    (compute, "use compute_precision f32 (model.compute_precision)")):
            if wanted not in NEEDS:
                continue
            if caps is None:
                try:
                    caps = list(self.core.get_property(device, "OPTIMIZATION_CAPABILITIES"))
                except RuntimeError:
                    return
            cap, isa = NEEDS[wanted]
            if cap not in caps:
                raise BackendError(f"{self.bundle.model_path}: this {device} lacks {isa} for {wanted} inference "
                                   f"(OpenVINO reports {caps}); {alternative}")

    def _check_writer_version(self, xml: Path) -> None:
        written, here = ir_writer_version(xml), ov_version(self._ov)
        if _newer_than_installed(written, here):
            raise BundleError(f"{xml}: this IR was written by OpenVINO {written}, this machine has {here}; "
                              f"upgrade it (pip install 'openvino>={written}') or re-export the bundle here")

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

    # -- inference ---------------------------------------------------------------------------------
    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        """Run one batch: (N, 3, H, W) float, or with the preprocessing in the graph the (N, H, W, 3)
        uint8 canvas. The input is shared, not copied; outputs are copies the caller may keep. Up to
        `concurrency` threads may call this at once (one request each)."""
        if self.input_format == "nchw" and batch.dtype != np.float32:
            batch = batch.astype(np.float32)
        request = self._requests.get()
        try:
            result = request.infer({0: batch}, share_inputs=True, share_outputs=True)
            # Shared outputs are views into the request's buffers; copy before the request is reused.
            return [np.array(result[i], copy=True) for i in range(len(self.output_names))]
        except RuntimeError as exc:
            raise BackendError(f"openvino inference failed: {exc}") from exc
        finally:
            self._requests.put(request)

    def close(self) -> None:
        self._requests = queue.SimpleQueue()
        self.compiled = None
        engine_closed(self)


def _preprocess_in_graph(ov: Any, model: Any, spec: Any) -> Any:
    """The sidecar's normalisation as graph steps: uint8 NHWC BGR in, the network's NCHW input out.
    model input = (pixel * scale - mean) / std = (pixel - mean / scale) / (std / scale)."""
    from openvino.preprocess import ColorFormat, PrePostProcessor

    ppp = PrePostProcessor(model)
    inp = ppp.input()
    inp.tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")).set_color_format(ColorFormat.BGR)
    inp.model().set_layout(ov.Layout("NCHW"))
    steps = inp.preprocess().convert_element_type(ov.Type.f32)
    if spec.color == "RGB":
        steps.convert_color(ColorFormat.RGB)
    mean, std = np.asarray(spec.mean, np.float64), np.asarray(spec.std, np.float64)
    if np.any(mean != 0):
        steps.mean([float(m / spec.scale) for m in mean])
    steps.scale([float(s / spec.scale) for s in std] if np.any(std != 1) else float(1.0 / spec.scale))
    return ppp.build()


def ov_version(ov: Any) -> str:
    """"2026.4.1" of the installed OpenVINO (its __version__ carries a build suffix)."""
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", str(ov.__version__))
    return ".".join(g for g in m.groups() if g is not None) if m else str(ov.__version__)


def ir_writer_version(xml: Path) -> str:
    """The OpenVINO release that wrote an IR (its rt_info, at the end of the .xml), or ''."""
    with open(xml, "rb") as f:
        f.seek(0, 2)
        f.seek(max(0, f.tell() - (1 << 16)))
        tail = f.read().decode("utf-8", "replace")
    m = re.search(r'name="OpenVINO Runtime" value="(\d+\.\d+(?:\.\d+)?)', tail)
    return m.group(1) if m else ""


def _newer_than_installed(written: str, installed: str) -> bool:
    """Whether an IR written by release `written` may use what release `installed` lacks. OpenVINO reads
    IRs of its own and older releases; releases are year.minor, patches do not change the IR."""
    def release(v: str) -> tuple[int, ...]:
        return tuple(int(x) for x in v.split(".")[:2])

    return bool(written) and release(written) > release(installed)
