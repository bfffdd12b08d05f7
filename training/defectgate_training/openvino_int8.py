"""OpenVINO exports of an ONNX bundle: an FP32 IR, and an INT8 IR by NNCF post-training quantization.

Calibration runs every image through the bundle's own `Preprocessor`, so the quantizer sees exactly
the tensors the station will feed. When a validation set and metric are given and plain quantization
loses more than `max_drop`, NNCF's accuracy-aware mode (`quantize_with_accuracy_control`) keeps the
most sensitive layers in floating point until the drop is within the tolerance. The metric judges
each candidate model through the runtime's `Detector` (the sidecar's views and decode), as the
station and `defectgate evaluate` would.

Each export is a bundle folder of its own (`engine: openvino`, `model.xml` + `model.bin`, sidecar).
The IR records the source ONNX sha256 in its rt_info; the runtime refuses an IR whose record does
not match the sidecar (defectgate.backends.openvino).
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from defectgate.backends.openvino import RT_INFO_SOURCE_SHA
from defectgate.bundle import Bundle, PartScoreSpec, Sidecar, load_bundle, sha256_file, write_sidecar
from defectgate.detector import Detector
from defectgate.engine_build import calibration_fingerprint, calibration_images, check_calibration_images
from defectgate.errors import BundleError, DatasetError, require
from defectgate.images import evenly_spaced, list_images, read_image
from defectgate.preprocess import Preprocessor
from defectgate.staging import staged_dir
from defectgate.tta import view_batcher
from defectgate.types import Detections

log = logging.getLogger(__name__)


# metric(predict, images) -> float, higher is better; predict(image_bgr) -> Detections in image pixels.
Predict = Callable[[np.ndarray], Detections]
Metric = Callable[[Predict, Sequence[Path]], float]


# -- calibration images: the same checks and fingerprint as the TensorRT INT8 build -------------------
# (calibration_images, calibration_fingerprint come from defectgate.engine_build, imported above)


def bundle_transform(bundle: Bundle) -> Callable[[Path], np.ndarray]:
    """Path -> the exact NCHW tensor the station would feed the model (a copy: the preprocessor reuses
    its buffer); for a view-batch bundle, the frame's views stacked as the batch (tta.TTABackend)."""
    pre = Preprocessor(bundle.sidecar.input)
    views = view_batcher(bundle.sidecar)

    def transform(path: Path) -> np.ndarray:
        batch = pre(read_image(path))[0]
        return views(batch)[0] if views is not None else batch.copy()

    return transform


# -- the project's validation metric --------------------------------------------------------------------
def project_map50(classes: Sequence[str]) -> Metric:
    """mAP50 exactly as `defectgate evaluate` computes it (evaluate.collect_images + box_metrics), over
    images with YOLO labels (`.../images/x.png` -> `.../labels/x.txt`)."""
    from .evaluate import box_metrics, collect_images

    names = list(classes)

    def metric(predict: Predict, images: Sequence[Path]) -> float:
        return float(box_metrics(collect_images(predict, images, names), names, {})[0]["map50"])

    return metric


# -- exports -----------------------------------------------------------------------------------------------
@dataclass
class Int8Result:
    bundle_dir: Path
    mode: str  # "ptq" or "accuracy_control"
    fingerprint: str
    calibration_images: int
    metrics: dict[str, Any] = field(default_factory=dict)


def export_openvino_ir(bundle_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """FP32 OpenVINO IR of an ONNX bundle. `out_dir` None: write `model.xml`/`.bin` next to the ONNX
    (the backend then loads the IR instead of converting the ONNX at start-up); else a separate
    `engine: openvino` bundle folder. Returns the folder written."""
    ov = require("openvino", "openvino", "OpenVINO export")
    bundle = _onnx_bundle(bundle_dir)
    model = ov.Core().read_model(str(bundle.model_path))
    model.set_rt_info(bundle.sidecar.sha256, RT_INFO_SOURCE_SHA)
    if out_dir is None:
        with tempfile.TemporaryDirectory(dir=bundle.root, prefix=".ir-") as tmp:
            ov.save_model(model, str(Path(tmp) / "model.xml"), compress_to_fp16=False)
            os.replace(Path(tmp) / "model.bin", bundle.root / "model.bin")  # weights first, xml names them
            os.replace(Path(tmp) / "model.xml", bundle.root / "model.xml")
        log.info("wrote OpenVINO IR next to %s", bundle.model_path)
        return bundle.root
    return _write_ir_bundle(ov, model, bundle, Path(out_dir), precision="fp32", engine_info={}, metrics=dict(bundle.sidecar.metrics))


def export_openvino_int8(bundle_dir: str | Path, calib_dir: str | Path, out_dir: str | Path, *,
                         val_images: Sequence[Path] | str | Path | None = None, metric: Metric | None = None,
                         metric_name: str = "map50", max_drop: float = 0.01, subset_size: int = 0,
                         allow_mixed_sizes: bool = False, float_scope: str = "decode",
                         conf_threshold: float = 0.001, max_iterations: int = 20, calib_limit: int = 0) -> Int8Result:
    """INT8 OpenVINO bundle by NNCF post-training quantization on `calib_dir` images (a folder, or a
    dataset yaml whose train split is used; `calib_limit` caps the count).

    With `val_images` (a folder of YOLO-labelled images, a list of paths, or a dataset yaml whose val
    split is used) the FP32 and INT8 models are scored with `metric` (default: mAP50 as `defectgate
    evaluate` computes it); if INT8 loses more than `max_drop` (absolute),
    NNCF's accuracy-aware quantization is run with the same metric, reverting at most `max_iterations`
    layer groups to floating point (each costs a recompile and a validation pass). Both scores go to
    the sidecar, with `within_tolerance` saying whether the tolerance was reached.
    """
    ov = require("openvino", "openvino", "INT8 export")
    nncf = require("nncf", "openvino", "INT8 export")
    nncf.set_log_level(logging.WARNING)  # its INFO lists every op it skips: hundreds of lines per export
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters
    bundle = _onnx_bundle(bundle_dir)
    calib = _calibration_list(calib_dir, allow_mixed_sizes, calib_limit)
    fingerprint = calibration_fingerprint(calib, Path(calib_dir).parent if _is_yaml(calib_dir) else calib_dir)
    transform = bundle_transform(bundle)
    core = ov.Core()
    model = model_to_quantize(ov, bundle.model_path)
    model.set_rt_info(bundle.sidecar.sha256, RT_INFO_SOURCE_SHA)
    ignored = float_ops(nncf, model, float_scope)
    subset = min(subset_size, len(calib)) if subset_size > 0 else len(calib)  # 0: the whole set, as ultralytics
    common = dict(preset=nncf.QuantizationPreset.MIXED, subset_size=subset, ignored_scope=ignored)
    calibration = nncf.Dataset(calib, transform)
    log.info("NNCF: quantizing %s on %d calibration images (fingerprint %s)", bundle.model_path, subset, fingerprint[:12])
    quantized = nncf.quantize(model, calibration, **common)
    mode, metrics = "ptq", {}

    if val_images is not None:
        vals = _val_list(val_images)
        metric = metric or project_map50(bundle.sidecar.classes)
        score = _scorer(core, bundle, metric, conf_threshold)
        fp32 = score(model, vals)
        int8 = score(quantized, vals)
        log.info("%s: fp32 %.4f, int8 (PTQ) %.4f", metric_name, fp32, int8)
        ptq = int8
        if fp32 - int8 > max_drop:
            log.info("INT8 loses %.4f > %.4f: NNCF accuracy-aware quantization", fp32 - int8, max_drop)
            validation = nncf.Dataset(vals)  # items stay paths; the metric reads images and labels itself

            def validation_fn(compiled: Any, items: Any) -> float:
                return float(metric(_predictor(compiled, bundle, conf_threshold), list(items)))

            quantized = nncf.quantize_with_accuracy_control(
                model, calibration, validation, validation_fn=validation_fn, max_drop=max_drop,
                drop_type=nncf.DropType.ABSOLUTE, **common,
                advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
                    max_num_iterations=max_iterations, ranking_subset_size=min(len(vals), 300)),
            )
            mode = "accuracy_control"
            int8 = score(quantized, vals)
            log.info("%s: int8 after accuracy control %.4f", metric_name, int8)
        drop = fp32 - int8
        metrics = {metric_name: round(int8, 5), f"{metric_name}_fp32": round(fp32, 5), f"{metric_name}_drop": round(drop, 5),
                   f"{metric_name}_ptq": round(ptq, 5), "validation_images": len(vals),
                   "within_tolerance": bool(drop <= max_drop), "max_drop": max_drop}
        if drop > max_drop:
            log.warning("INT8 %s drop %.4f is above the tolerance %.4f even after accuracy control", metric_name, drop, max_drop)
    engine_info = {
        "nncf_version": nncf.__version__,
        "quantization": {"mode": mode, "preset": "mixed", "subset_size": subset, "float_scope": float_scope,
                         "ignored_ops": len(ignored.names) if ignored is not None else 0},
        "calibration": {"fingerprint": fingerprint, "images": len(calib), "folder": f"{Path(calib_dir).name}:train" if _is_yaml(calib_dir) else Path(calib_dir).name},
        "source_metrics": dict(bundle.sidecar.metrics),
    }
    out = _write_ir_bundle(ov, quantized, bundle, Path(out_dir), precision="int8", engine_info=engine_info, metrics=metrics)
    return Int8Result(out, mode, fingerprint, len(calib), metrics)


def calibrate_like_fp32(bundle_dir: str | Path, data: str | Path, split: str = "val", backend: str = "openvino") -> dict:
    """The INT8 bundle's own operating point: per-class thresholds (and its part score's threshold, when
    it declares one) calibrated on `data`'s split through the INT8 model, to the escape count its FP32
    source reached there (never above the FP32 target), so that INT8 lets no more NG parts pass on that
    split than FP32 did; its overkill is what it costs.
    Returns the evaluation ({} when the FP32 sidecar records no calibration to match)."""
    from .datayaml import load_data_yaml
    from .evaluate import evaluate_model
    from .export import metrics_for_sidecar

    bundle = load_bundle(bundle_dir)
    source = bundle.sidecar.engine_info.get("source_metrics", {})
    fp32_escape, target = source.get("escape_rate"), source.get("target_escape_rate")
    if fp32_escape is None or target is None:
        log.warning("%s: the FP32 bundle records no calibrated escape rate; INT8 keeps its thresholds", bundle.root)
        return {}
    goal = fp32_budget(source)
    use = split if split in load_data_yaml(data).splits else "train"
    ev = evaluate_model(bundle.root, data, use, target_escape=goal, backend=backend)
    metrics = {**bundle.sidecar.metrics, **metrics_for_sidecar(ev), "fp32_escape_rate": fp32_escape}
    update = {"class_thresholds": ev["thresholds"], "metrics": metrics}
    if ev["part_score"] is not None:  # a part-score bundle decides by its score: its threshold moves, not the classes'
        update["part_score"] = PartScoreSpec.model_validate(ev["part_score"])
    write_sidecar(bundle.root, bundle.sidecar.model_copy(update=update))
    log.info("INT8 thresholds calibrated to escape <= %.4f (FP32's): escape %s, overkill %s", goal, ev["escape_rate"],
             ev["overkill_rate"])
    return ev


# -- helpers -------------------------------------------------------------------------------------------------
def fp32_budget(source: dict) -> float:
    """The escape budget for INT8's re-calibration: FP32's target, or lower, the budget whose allowance
    on FP32's calibration parts is the count FP32 let through there, (e + 1) / (n + 1)
    (evidence.escapes_allowed). FP32's rate e / n as the budget would allow INT8 one part fewer than
    FP32 and cost overkill for nothing. Sidecars without the counts: the rate."""
    target = float(source["target_escape_rate"])
    parts = source.get("parts") or {}
    if parts.get("ng_parts") and parts.get("escapes") is not None:
        return min(target, (int(parts["escapes"]) + 1) / (int(parts["ng_parts"]) + 1))
    return min(target, float(source["escape_rate"]))


def _onnx_bundle(bundle_dir: str | Path) -> Bundle:
    bundle = load_bundle(bundle_dir)
    if bundle.sidecar.engine != "onnx":
        raise BundleError(
            f"{bundle.root}: OpenVINO export starts from an ONNX bundle, this one is '{bundle.sidecar.engine}'; "
            "pass the FP32 ONNX bundle that 'defectgate export' wrote"
        )
    return bundle


def model_to_quantize(ov: Any, onnx: Path) -> Any:
    """The ONNX graph as NNCF should see it: through `openvino.convert_model`, whose transformations fuse
    each SiLU's Sigmoid * x into one Swish op. Read raw (`Core.read_model`) the 77 SiLUs of a YOLO11n stay
    Sigmoid + Multiply, NNCF puts a quantizer between every convolution and its activation, and the
    compiled INT8 model then runs each activation as a separate kernel: 20 of its 50 ms at 640 px here
    (issue 22, OpenVINO's PERF_COUNT), which is where ultralytics' INT8 export (traced from torch, SiLU as
    one op) was faster than ours."""
    return ov.convert_model(str(onnx))


# What stays in floating point (NNCF ignored scope), by name:
#   decode: the box-decode tail of the detect head (DFL softmax, anchor arithmetic, the box/score Concat)
#           and the class-score Sigmoid; every convolution, the head's included, is INT8. This is what
#           ultralytics' own `int8=True` OpenVINO export leaves in float (its torch graph names the head's
#           convolutions `model.23.cv2...`, outside its ignored `model.23/` scope), translated to the ONNX
#           graph's names. Default.
#   head:   the whole last `/model.N/` module and every Sigmoid (the recipe before issue 22). On the ONNX
#           graph "every Sigmoid" also means the 78 SiLU gates of the backbone, and the 19 head
#           convolutions stay FP32: each float island costs a dequantize/quantize pair, and that INT8
#           model ran slower than FP32 (issue 22).
#   none:   everything NNCF's MIXED preset quantizes.
FLOAT_SCOPES = ("decode", "head", "none")


def float_ops(nncf: Any, model: Any, scope: str) -> Any:
    """The NNCF IgnoredScope for `scope` (FLOAT_SCOPES) on an ultralytics ONNX graph read by OpenVINO;
    None when nothing is ignored (or the graph has no `/model.N/` head to name)."""
    if scope not in FLOAT_SCOPES:
        raise BundleError(f"INT8 float scope '{scope}' is unknown; use one of {', '.join(FLOAT_SCOPES)}")
    ops = model.get_ordered_ops()
    indices = [int(m.group(1)) for op in ops if (m := re.search(r"/model\.(\d+)/", op.get_friendly_name()))]
    if scope == "none" or not indices:
        return None
    head = f"/model.{max(indices)}/"
    if scope == "head":
        names = [op.get_friendly_name() for op in ops if head in op.get_friendly_name() or op.get_type_name() == "Sigmoid"]
    else:
        branch = re.compile(re.escape(head) + r"cv\d+\.")  # the head's per-level conv branches: quantized
        names = [n for op in ops if head in (n := op.get_friendly_name()) and not branch.search(n)
                 and op.get_type_name() != "Constant"]
    return nncf.IgnoredScope(names=names, validate=False)


def _is_yaml(path: Any) -> bool:
    return isinstance(path, (str, Path)) and Path(path).suffix in (".yaml", ".yml")


def _split_of(data_yaml: str | Path, split: str) -> list[Path]:
    from .datayaml import load_data_yaml, split_images

    return split_images(load_data_yaml(data_yaml), split)


def _calibration_list(calib: str | Path, allow_mixed_sizes: bool, limit: int) -> list[Path]:
    if not _is_yaml(calib):
        return calibration_images(calib, allow_mixed_sizes=allow_mixed_sizes, limit=limit)
    paths = evenly_spaced(sorted(_split_of(calib, "train")), limit)  # the one sampling rule (images.py)
    check_calibration_images(paths, allow_mixed_sizes)
    return paths


def _val_list(val_images: Sequence[Path] | str | Path) -> list[Path]:
    if _is_yaml(val_images):
        paths = _split_of(val_images, "val")
    elif isinstance(val_images, (str, Path)):
        folder = Path(val_images)
        if not folder.is_dir():
            raise DatasetError(f"{folder}: validation folder not found")
        paths = list_images(folder)
    else:
        paths = [Path(p) for p in val_images]
    if not paths:
        raise DatasetError(f"{val_images}: no validation images; INT8 accuracy is measured on labelled images")
    return paths


class _Compiled:
    """A model NNCF is working on, compiled by OpenVINO, behind the Backend interface."""

    name = "openvino:nncf"

    def __init__(self, compiled: Any):
        self.compiled = compiled

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        return [np.asarray(self.compiled({0: batch})[0])]

    def close(self) -> None:
        self.compiled = None


def _predictor(compiled: Any, bundle: Bundle, conf_threshold: float) -> Predict:
    """The compiled model judging images as the station would: the bundle's Detector around it."""
    return Detector(bundle, _Compiled(compiled), conf_floor=conf_threshold).detect


def _scorer(core: Any, bundle: Bundle, metric: Metric, conf_threshold: float) -> Callable[[Any, list[Path]], float]:
    def score(model: Any, images: list[Path]) -> float:
        # f32 for the non-INT8 ops: what the runtime backend uses by default (no silent bf16)
        compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        return float(metric(_predictor(compiled, bundle, conf_threshold), images))

    return score


def _write_ir_bundle(ov: Any, model: Any, bundle: Bundle, out: Path, precision: str,
                     engine_info: dict[str, Any], metrics: dict[str, Any]) -> Path:
    """Write IR + sidecar into a temp folder beside `out`, then swap it in: never half a bundle."""
    out = out.resolve()
    if out == bundle.root.resolve():
        raise BundleError(f"{out}: write the OpenVINO bundle to its own folder, not over the source bundle")
    out.parent.mkdir(parents=True, exist_ok=True)
    with staged_dir(out) as tmp:
        xml = tmp / "model.xml"
        ov.save_model(model, str(xml), compress_to_fp16=False)
        src: Sidecar = bundle.sidecar
        info = {"openvino_version": ov.__version__, "weights_sha256": sha256_file(tmp / "model.bin"), **engine_info}
        sidecar = src.model_copy(update={
            "model_file": "model.xml", "sha256": sha256_file(xml), "engine": "openvino", "precision": precision,
            "engine_info": info, "source_onnx_sha256": src.sha256, "metrics": metrics,
            "versions": {**src.versions, "openvino": ov.__version__},
        })
        write_sidecar(tmp, sidecar)
    log.info("wrote %s OpenVINO bundle %s", precision.upper(), out)
    return out
