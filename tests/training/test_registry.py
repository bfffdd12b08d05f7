"""defectgate promote: versioned registry, current pointer, history, the gate, rollback."""

from __future__ import annotations

import json
import shutil

import pytest

from defectgate.bundle import load_bundle
from defectgate_training import registry as reg

pytestmark = pytest.mark.slow


def _with_thresholds(src, dst, threshold: float):
    """The same model with every class threshold set to `threshold`: 0.99 passes (escapes) NG parts
    the current one rejects; 0.0 catches every NG part the model sees at all, so escapes cannot rise."""
    shutil.copytree(src, dst)
    sc = json.loads((dst / "model.json").read_text())
    sc["class_thresholds"] = {c: threshold for c in sc["classes"]}
    sc["conf_threshold"] = threshold
    (dst / "model.json").write_text(json.dumps(sc))
    return dst


def test_promote_gate_refuse_and_rollback(bundle, synth_data, tmp_path, capsys):
    from defectgate.cli import main

    root = tmp_path / "registry"
    eager = _with_thresholds(bundle.bundle, tmp_path / "eager", 0.0)
    args = ["--registry", str(root), "--data", str(synth_data), "--split", "val"]
    assert main(["promote", str(eager), *args, "--overkill-tolerance", "1"]) == 0
    assert "PROMOTED" in capsys.readouterr().out
    assert reg.current_version(root) == "v0001"
    assert load_bundle(root / "current").sidecar.version == "v0001"  # the station loads REGISTRY/current

    worse = _with_thresholds(bundle.bundle, tmp_path / "worse", 0.99)
    assert main(["promote", str(worse), *args]) == 1
    out = capsys.readouterr().out
    assert "REFUSED" in out and "escape rate" in out and "WORSE" in out
    assert reg.current_version(root) == "v0001" and reg.versions(root) == ["v0001"]

    # the same model again is not worse: promoted as v0002 (overkill within tolerance of itself)
    assert main(["promote", str(eager), *args]) == 0
    assert reg.current_version(root) == "v0002"

    assert main(["promote", "--registry", str(root), "--rollback"]) == 0
    assert reg.current_version(root) == "v0001"
    assert main(["promote", "--registry", str(root), "--rollback", "--to", "v0002"]) == 0
    assert reg.current_version(root) == "v0002"

    events = [e["event"] for e in reg.history(root)]
    assert events == ["promoted", "refused", "promoted", "rollback", "rollback"]
    refused = reg.history(root)[1]
    assert refused["candidate_metrics"]["escape_rate"] > refused["current_metrics"]["escape_rate"]
    assert main(["promote", "--registry", str(root), "--status"]) == 0
    assert "current v0002" in capsys.readouterr().out


def test_bad_registry_and_bad_candidate_are_clear_errors(bundle, synth_data, tmp_path, capsys):
    from defectgate.cli import main

    notreg = tmp_path / "stuff"
    notreg.mkdir()
    (notreg / "file.txt").write_text("x")
    assert main(["promote", str(bundle.bundle), "--registry", str(notreg), "--data", str(synth_data)]) == 2
    assert "is not a model registry" in capsys.readouterr().err
    assert main(["promote", str(tmp_path), "--registry", str(tmp_path / "r"), "--data", str(synth_data)]) == 2
    assert "not a bundle folder" in capsys.readouterr().err
    assert main(["promote", "--registry", str(tmp_path / "none"), "--rollback"]) == 2
    empty = tmp_path / "r2"
    reg.open_registry(empty, create=True)
    with pytest.raises(reg.RegistryError, match="nothing to roll back"):
        reg.rollback(empty)
