"""INT8 QDQ bundles: calibrated on the bundle's own preprocessing, runnable by the station."""

from __future__ import annotations

import json

import pytest

from defectgate.bundle import load_bundle

pytestmark = pytest.mark.slow


def test_int8_bundle_is_quantized_and_runs_through_the_runtime(bundle, synth_data, tmp_path):
    import onnx

    from defectgate_training.evaluate import evaluate_model
    from defectgate_training.quantize import quantize_bundle

    out = tmp_path / "int8"
    r = quantize_bundle(bundle.bundle, synth_data.parent / "images" / "train", out, max_images=8, data=str(synth_data))
    b = load_bundle(out)
    assert b.sidecar.precision == "int8" and b.sidecar.source_onnx_sha256 == bundle.sidecar["sha256"]
    q = b.sidecar.engine_info["quantization"]
    assert q["calibration_images"] == 8 and q["format"] == "QDQ" and len(q["calibration_fingerprint"]) == 64
    ops = {n.op_type for n in onnx.load(str(b.model_path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert b.sidecar.class_thresholds == bundle.sidecar["class_thresholds"]  # same operating point
    assert r["int8_ms"] > 0 and r["fp32_ms"] > 0 and "map50_change" in r
    e = evaluate_model(out, synth_data, "val", target_escape=None, backend="onnxruntime")
    assert e["images"] == 5 and json.loads((out / "model.json").read_text())["metrics"]["map50"] == e["map50"]


def test_int8_needs_an_fp32_onnx_bundle_and_images(bundle, tmp_path):
    from defectgate.errors import BundleError, DatasetError
    from defectgate_training.quantize import quantize_bundle

    with pytest.raises(DatasetError, match="calibration source not found"):
        quantize_bundle(bundle.bundle, tmp_path / "nope", tmp_path / "q")
    int8 = tmp_path / "fake"
    import shutil

    shutil.copytree(bundle.bundle, int8)
    sc = json.loads((int8 / "model.json").read_text())
    sc["precision"] = "int8"
    (int8 / "model.json").write_text(json.dumps(sc))
    with pytest.raises(BundleError, match="starts from an FP32 ONNX bundle"):
        quantize_bundle(int8, tmp_path, tmp_path / "q2")
