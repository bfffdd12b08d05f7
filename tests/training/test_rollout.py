"""Staging a candidate for shadow mode and promoting it on evidence (gate split part; the reviewed
shadow disagreements are tested end to end with a station in tests/runtime/test_shadow*.py)."""

from __future__ import annotations

import json

import pytest

from defectgate.bundle import load_bundle
from defectgate.cli import main
from defectgate_training import registry as reg
from defectgate_training.evidence import clopper_pearson_upper

from test_registry import _with_thresholds

pytestmark = pytest.mark.slow


def _eval_ng_parts(bundle_dir, data):
    from defectgate_training.evaluate import evaluate_model

    e = evaluate_model(bundle_dir, data, "val", target_escape=None, backend="onnxruntime")
    return e["parts"]["ng_parts"], e["parts"]["escapes"]


def test_stage_then_promote_on_gate_evidence_states_the_bound(bundle, synth_data, tmp_path, capsys):
    root = tmp_path / "registry"
    base = ["--registry", str(root)]
    current = _with_thresholds(bundle.bundle, tmp_path / "current", 0.99)  # lets NG parts through
    assert main(["promote", str(current), *base, "--data", str(synth_data), "--overkill-tolerance", "1"]) == 0
    eager = _with_thresholds(bundle.bundle, tmp_path / "eager", 0.0)  # rejects all it sees: escapes cannot rise
    assert main(["promote", str(eager), *base, "--stage"]) == 0
    assert reg.current_version(root) == "v0001" and reg.candidate_version(root) == "v0002", "staging keeps current"
    assert load_bundle(root / "candidate").sidecar.version == "v0002"  # shadow.bundle: REGISTRY/candidate loads

    n_ng, escapes = _eval_ng_parts(root / "candidate", synth_data)
    assert n_ng > 0
    # a limit the bound cannot meet on so few NG parts: refused, with the number needed
    ev = [*base, "--evidence", "replay", "--data", str(synth_data), "--overkill-tolerance", "1"]
    assert main(["promote", *ev, "--escape-limit", "0.05"]) == 1
    out = capsys.readouterr().out
    assert "REFUSED" in out and "too few NG parts" in out and "at least 59 needed" in out
    assert reg.current_version(root) == "v0001" and reg.candidate_version(root) == "v0002"

    upper = clopper_pearson_upper(escapes, n_ng)
    assert main(["promote", *ev, "--escape-limit", f"{min(0.99, upper + 0.01):.4f}"]) == 0
    out = capsys.readouterr().out
    assert "PROMOTED candidate v0002" in out and f"on {n_ng} NG parts" in out
    assert reg.current_version(root) == "v0002" and reg.candidate_version(root) is None
    side = load_bundle(root / "current").sidecar
    assert side.metrics["escape_bound"]["ng_parts"] == n_ng
    assert side.metrics["escape_bound"]["candidate_upper"] == pytest.approx(upper)
    assert side.metrics["escape_bound"]["statement"].startswith(f"escape <= {100 * upper:.2f} % at 95 % confidence")
    saved = json.loads((root / "versions" / "v0002" / "evidence.json").read_text())
    assert saved["sources"][0]["name"] == "gate_split" and saved["promote"]
    assert [e["event"] for e in reg.history(root)] == ["promoted", "staged", "refused", "promoted"]

    assert main(["promote", *base, "--rollback"]) == 0, "the previous model comes back the same way"
    assert reg.current_version(root) == "v0001"


def test_a_candidate_that_escapes_more_is_refused_and_nothing_moves(bundle, synth_data, tmp_path, capsys):
    root = tmp_path / "registry"
    base = ["--registry", str(root)]
    assert main(["promote", str(_with_thresholds(bundle.bundle, tmp_path / "eager", 0.0)), *base, "--data",
                 str(synth_data), "--overkill-tolerance", "1"]) == 0
    assert main(["promote", str(_with_thresholds(bundle.bundle, tmp_path / "lax", 0.99)), *base, "--stage"]) == 0
    assert main(["promote", *base, "--evidence", "shadow", "--data", str(synth_data), "--escape-limit", "0.99"]) == 1
    out = capsys.readouterr().out
    assert "REFUSED" in out and "the candidate let" in out
    assert reg.current_version(root) == "v0001" and reg.candidate_version(root) == "v0002"


def test_evidence_refusals_name_what_is_missing(bundle, synth_data, tmp_path, capsys):
    root = tmp_path / "registry"
    assert main(["promote", str(bundle.bundle), "--registry", str(root), "--data", str(synth_data)]) == 0
    assert main(["promote", "--registry", str(root), "--evidence", "shadow", "--data", str(synth_data)]) == 2
    assert "no candidate staged" in capsys.readouterr().err
    other = tmp_path / "other"
    import shutil

    shutil.copytree(bundle.bundle, other)
    sc = json.loads((other / "model.json").read_text())
    sc["classes"] = [f"x{i}" for i in range(len(sc["classes"]))]
    sc["class_thresholds"] = {}
    (other / "model.json").write_text(json.dumps(sc))
    assert main(["promote", str(other), "--registry", str(root), "--stage"]) == 2
    assert "differ from the current model" in capsys.readouterr().err
    assert reg.candidate_version(root) is None
