"""The INT8 OpenVINO bundle's own operating point (issue 22): its per-class thresholds are calibrated
through the INT8 model to the escape count the FP32 bundle reached on the same split, so INT8 lets no
more NG parts pass there than FP32 did."""

from __future__ import annotations

import logging

import pytest

from defectgate.bundle import load_bundle, read_sidecar, write_sidecar
from defectgate_training.evidence import escapes_allowed

pytest.importorskip("openvino")
pytest.importorskip("nncf")


@pytest.mark.parametrize("n,e,target", [(180, 2, 0.02), (180, 1, 0.02), (66, 5, 0.10), (66, 3, 0.10), (40, 0, 0.05)])
def test_int8_is_allowed_the_escape_count_fp32_reached_never_more_than_its_target(n, e, target):
    from defectgate_training.openvino_int8 import fp32_budget

    budget = fp32_budget({"escape_rate": e / n, "target_escape_rate": target, "parts": {"ng_parts": n, "escapes": e}})
    assert escapes_allowed(n, budget) == min(e, escapes_allowed(n, target))
    assert budget <= target
    # a sidecar without the counts: FP32's rate, the lower of the two
    assert fp32_budget({"escape_rate": 0.25, "target_escape_rate": 0.6}) == 0.25


@pytest.mark.slow
def test_int8_thresholds_are_calibrated_to_the_fp32_escape_rate(bundle, synth_data, tmp_path, caplog):
    from defectgate_training.openvino_int8 import calibrate_like_fp32, export_openvino_int8

    fp32 = load_bundle(bundle.bundle).sidecar
    out = export_openvino_int8(bundle.bundle, synth_data, tmp_path / "int8").bundle_dir
    before = load_bundle(out).sidecar
    assert before.engine_info["source_metrics"]["escape_rate"] == fp32.metrics["escape_rate"]
    ev = calibrate_like_fp32(out, synth_data)
    after = load_bundle(out).sidecar
    assert after.class_thresholds == ev["thresholds"]  # the INT8 bundle now runs at its own thresholds
    assert after.metrics["escape_rate"] == ev["escape_rate"] <= fp32.metrics["escape_rate"]
    assert after.metrics["parts"]["escapes"] <= fp32.metrics["parts"]["escapes"]
    # the budget whose allowance on these parts is FP32's count, not FP32's rate (which allows one part fewer)
    n, e = fp32.metrics["parts"]["ng_parts"], fp32.metrics["parts"]["escapes"]
    assert after.metrics["target_escape_rate"] == min(fp32.metrics["target_escape_rate"], (e + 1) / (n + 1))
    assert escapes_allowed(n, after.metrics["target_escape_rate"]) == min(e, escapes_allowed(
        n, fp32.metrics["target_escape_rate"]))
    assert after.metrics["fp32_escape_rate"] == fp32.metrics["escape_rate"]
    assert after.sha256 == before.sha256  # the model file is untouched, the bundle still loads

    # the goal is the lower of FP32's target and what FP32 reached: here FP32 did better than its target
    side = read_sidecar(out / "model.json")
    write_sidecar(out, side.model_copy(update={"engine_info": {
        **side.engine_info, "source_metrics": {"escape_rate": 0.25, "target_escape_rate": 0.6}}}))
    calibrate_like_fp32(out, synth_data)
    assert load_bundle(out).sidecar.metrics["target_escape_rate"] == 0.25

    # a bundle that decides by a part score: the score's threshold is what moves, and the sidecar says so
    from defectgate.bundle import PartScoreSpec
    from defectgate.partscore import feature_names

    names = feature_names(side.classes)
    declared = PartScoreSpec(features=names, weights=[4.0 if n.startswith("top:") else 0.0 for n in names],
                             bias=-2.0, threshold=0.5, fitted_on="test")
    write_sidecar(out, read_sidecar(out / "model.json").model_copy(update={"part_score": declared}))
    ev = calibrate_like_fp32(out, synth_data)
    after = load_bundle(out).sidecar
    assert ev["decision"] == "part_score" and ev["part_score"]["threshold"] != 0.5
    assert after.part_score.threshold == ev["part_score"]["threshold"]
    assert after.part_score.weights == declared.weights and after.metrics["escape_rate"] == ev["escape_rate"]
    write_sidecar(out, read_sidecar(out / "model.json").model_copy(update={"part_score": None}))

    # an FP32 source that was never calibrated gives nothing to match: thresholds stay, and it says so
    side = read_sidecar(out / "model.json")
    after = side
    write_sidecar(out, side.model_copy(update={"engine_info": {**side.engine_info, "source_metrics": {}}}))
    with caplog.at_level(logging.WARNING, logger="defectgate_training.openvino_int8"):
        assert calibrate_like_fp32(out, synth_data) == {}
    assert "records no calibrated escape rate" in caplog.text
    assert load_bundle(out).sidecar.class_thresholds == after.class_thresholds
