"""INT8 bundles for CPU-only stations: ONNX Runtime static quantization in QDQ format.

Calibration images go through the bundle's own Preprocessor (letterbox, RGB, 1/255), so the
activation ranges are those the station will produce. The detection head's decode (DFL softmax,
anchor arithmetic, the box/score Concat) stays in float: it mixes pixel-scale boxes with 0..1
scores in one tensor, and one INT8 scale for both would crush the scores. Convolutions everywhere,
the head's included, are quantized (weights per channel, symmetric INT8; activations UINT8).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from pathlib import Path

import numpy as np

from defectgate.errors import BundleError, DatasetError
from defectgate.images import evenly_spaced, list_images, read_image
from defectgate.staging import staged_dir, write_json_atomic

from .datayaml import load_data_yaml, split_images

log = logging.getLogger(__name__)


def calibration_images(calib: str | Path, max_images: int) -> list[Path]:
    """Images from a folder (recursively) or from a dataset yaml's train split; at most `max_images`
    spread over them (the one sampling rule, defectgate.images.evenly_spaced)."""
    calib = Path(calib)
    if calib.suffix in (".yaml", ".yml") or (calib.is_dir() and (calib / "data.yaml").is_file()):
        images = split_images(load_data_yaml(calib), "train")
    elif calib.is_dir():
        images = list_images(calib)
    else:
        raise DatasetError(f"{calib}: calibration source not found; pass a folder of images or a dataset yaml")
    if not images:
        raise DatasetError(f"{calib}: no images for INT8 calibration")
    return evenly_spaced(images, max_images)


def head_nodes(model) -> list[str]:
    """Non-Conv nodes of the last `/model.N/` module (the Detect head's decode)."""
    pat = re.compile(r"^/model\.(\d+)/")
    idx = [int(m.group(1)) for n in model.graph.node if (m := pat.match(n.name))]
    if not idx:
        return []
    prefix = f"/model.{max(idx)}/"
    return [n.name for n in model.graph.node if n.name.startswith(prefix) and n.op_type != "Conv"]


def quantize_bundle(bundle_dir: str | Path, calib: str | Path, out: str | Path, max_images: int = 200,
                    data: str | None = None, compare: bool = True) -> dict:
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from defectgate.bundle import load_bundle, sha256_file
    from defectgate.preprocess import Preprocessor

    src = load_bundle(bundle_dir)
    if src.sidecar.engine != "onnx" or src.sidecar.precision != "fp32":
        raise BundleError(f"{src.root}: INT8 quantization starts from an FP32 ONNX bundle, this one is "
                          f"{src.sidecar.engine}/{src.sidecar.precision}")
    images = calibration_images(calib, max_images)
    from defectgate.tta import view_batcher

    pre = Preprocessor(src.sidecar.input)
    views = view_batcher(src.sidecar)  # a view-batch bundle is calibrated on the views it will run
    input_name = src.sidecar.input.name
    h = hashlib.sha256()

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(images)

        def get_next(self):
            for path in self.it:
                img = read_image(path)
                h.update(path.name.encode())
                batch, _ = pre(img)
                return {input_name: views(batch)[0] if views is not None else batch.copy()}
            return None

    out = Path(out)
    with staged_dir(out) as tmp:
        prepped = tmp / "prep.onnx"
        quant_pre_process(str(src.model_path), str(prepped), skip_symbolic_shape=True)
        excluded = head_nodes(onnx.load(str(prepped)))
        t0 = time.monotonic()
        quantize_static(str(prepped), str(tmp / "model.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=excluded,
                        extra_options={"WeightSymmetric": True, "ActivationSymmetric": False})
        prepped.unlink()
        sidecar = json.loads((src.root / "model.json").read_text())
        sidecar.update({
            "model_file": "model.onnx", "sha256": sha256_file(tmp / "model.onnx"), "precision": "int8",
            "source_onnx_sha256": src.sidecar.sha256, "version": "",
            "engine_info": {"quantization": {
                "tool": "onnxruntime.quantization.quantize_static", "format": "QDQ", "method": "MinMax",
                "weights": "int8 per-channel symmetric", "activations": "uint8 asymmetric",
                "calibration_images": len(images), "calibration_fingerprint": h.hexdigest(),
                "calibration_source": str(calib), "float_nodes": len(excluded),
                "seconds": round(time.monotonic() - t0, 1)}},
        })
        write_json_atomic(tmp / "model.json", sidecar)
    result = {"bundle": str(out), "calibration_images": len(images), "float_nodes": len(excluded)}
    if compare:
        result.update(compare_precisions(src.root, out, data))
    result["summary"] = ", ".join(f"{k} {v}" for k, v in result.items() if k not in ("bundle", "int8_metrics"))
    if data and compare:  # record the INT8 bundle's own metrics in its sidecar
        sc = json.loads((out / "model.json").read_text())
        sc["metrics"] = {**sc.get("metrics", {}), **result.get("int8_metrics", {})}
        write_json_atomic(out / "model.json", sc)
    return result


def time_bundle(bundle_dir: Path, runs: int = 30, threads: int = 0) -> float:
    """Median milliseconds of one inference (the sidecar's views included) on ONNX Runtime (CPU)."""
    from defectgate.detector import Detector

    detector = Detector.open(bundle_dir, "onnxruntime", threads=threads)
    x = np.random.default_rng(0).random((1, 3, *detector.sidecar.input.imgsz), dtype=np.float32)
    ts = []
    try:
        for _ in range(3):
            detector.infer(x)
        for _ in range(runs):
            t = time.perf_counter()
            detector.infer(x)
            ts.append((time.perf_counter() - t) * 1000)
    finally:
        detector.close()
    return float(np.median(ts))


def compare_precisions(fp32: Path, int8: Path, data: str | None, split: str = "val") -> dict:
    """Speed of both bundles on this CPU, and (with data) mAP50 / escape-rate change at the FP32
    bundle's own calibrated thresholds."""
    out = {"fp32_ms": round(time_bundle(fp32), 2), "int8_ms": round(time_bundle(int8), 2)}
    out["speedup"] = round(out["fp32_ms"] / out["int8_ms"], 2)
    if data:
        from .evaluate import evaluate_model

        spec = load_data_yaml(data)
        use = split if split in spec.splits else "train"
        e32 = evaluate_model(fp32, data, use, target_escape=None, backend="onnxruntime")
        e8 = evaluate_model(int8, data, use, target_escape=None, backend="onnxruntime")
        out.update({"fp32_map50": e32["map50"], "int8_map50": e8["map50"],
                    "map50_change": round(e8["map50"] - e32["map50"], 4),
                    "fp32_escape": e32["escape_rate"], "int8_escape": e8["escape_rate"],
                    "fp32_overkill": e32["overkill_rate"], "int8_overkill": e8["overkill_rate"]})
        out["int8_metrics"] = {"map50": e8["map50"], "map50_95": e8["map50_95"], "escape_rate": e8["escape_rate"],
                               "overkill_rate": e8["overkill_rate"], "split": use}
    return out
