"""Safe model change on a live line: stage a candidate for shadow mode, promote it on evidence.

    defectgate promote BUNDLE --registry R --stage          R/candidate -> versions/vNNNN (current untouched)
    station config: shadow.bundle: R/candidate                the station judges every part with it too, never acts
    defectgate qa ... (Disagreements)                         reviewers settle the parts where the two disagree
    defectgate promote --registry R --evidence shadow --archive A --data GATE.yaml --escape-limit 0.05
        -> R/current -> the candidate, when evidence.judge says so; the station watching R hot-swaps it in
    defectgate promote --registry R --rollback                R/current back to the previous version, swapped the same way

The staged version is the one promoted: it is not copied again, so the model the shadow judged with
(the archive's shadow rows name its version) is the very file that goes live.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from defectgate.staging import write_json_atomic

from .evidence import CONFIDENCE, EvidenceError, judge
from .evidence_sources import gate_split_source, reviewed_source
from .registry import (GateDecision, RegistryError, _append_history, _locked, _set_current, add_version,
                       candidate_version, comparison_table, current_version, open_registry)

EVIDENCE_KINDS = ("shadow", "replay")


def stage(candidate: str | Path, registry: str | Path) -> str:
    """Add `candidate` to the registry as its candidate; current stays as it is. Returns the version."""
    from defectgate.bundle import load_bundle

    root = open_registry(registry, create=True)
    with _locked(root):
        cur = current_version(root)
        if cur is not None:
            have = load_bundle(root / "versions" / cur).classes
            new = load_bundle(Path(candidate)).classes
            if new != have:
                raise RegistryError(f"{candidate}: classes {new} differ from the current model {cur}'s {have}; a "
                                    "candidate must judge the same classes to be compared with it")
        version = add_version(root, Path(candidate))
        _set_current(root, version, name="candidate")
        _append_history(root, {"event": "staged", "version": version, "candidate": str(candidate), "current": cur})
    return version


def promote_on_evidence(registry: str | Path, kind: str, archive: str | Path | None = None,
                        reviews: str | Path | None = None, data: str | Path | None = None, split: str = "val",
                        limit: float = 0.05, confidence: float = CONFIDENCE, tol_overkill: float = 0.01,
                        backend: str = "onnxruntime", force: bool = False) -> GateDecision:
    if kind not in EVIDENCE_KINDS:
        raise EvidenceError(f"--evidence {kind!r}: use one of {', '.join(EVIDENCE_KINDS)}")
    if archive is None and data is None:
        raise EvidenceError("promotion on evidence needs the reviewed disagreements (--archive) and/or a gate split "
                            "(--data) to count escapes on")
    root = open_registry(registry)
    with _locked(root):
        cand_v, cur_v = candidate_version(root), current_version(root)
        if cand_v is None:
            raise RegistryError(f"{root}: no candidate staged; stage one with 'defectgate promote BUNDLE --registry "
                                f"{root} --stage' and run it in shadow mode first")
        if cur_v is None:
            raise RegistryError(f"{root}: no current model to compare the candidate with; promote the first model "
                                "with a plain 'defectgate promote'")
        sources, reasons, cand_m, cur_m = [], [], {}, None
        if data is not None:
            gate, cand_eval, cur_eval = gate_split_source(root / "versions" / cand_v, root / "versions" / cur_v,
                                                          data, split, backend)
            sources.append(gate)
            keys = ("map50", "map50_95", "escape_rate", "overkill_rate")
            cand_m, cur_m = {k: cand_eval[k] for k in keys}, {k: cur_eval[k] for k in keys}
            c, o = cand_m["overkill_rate"], cur_m["overkill_rate"]
            if c is not None and o is not None and c > o + tol_overkill + 1e-12:
                reasons.append(f"overkill_rate {c:.4f} > current {o:.4f} + tolerance {tol_overkill}")
        if archive is not None:
            sources.append(reviewed_source(archive, reviews, cur_v, cand_v, kind))
        verdict = judge(sources, limit, confidence)
        reasons = verdict.reasons + reasons
        evidence = {"kind": kind, "candidate": cand_v, "current": cur_v, **verdict.to_json()}
        table = _table(cand_m, cur_m, tol_overkill, evidence)
        event = {"candidate": cand_v, "current": cur_v, "evidence": evidence, "candidate_metrics": cand_m,
                 "current_metrics": cur_m}
        if reasons and not force:
            _append_history(root, {"event": "refused", **event, "reasons": reasons})
            return GateDecision(False, None, table, cand_m, cur_m, reasons, evidence)
        vdir = root / "versions" / cand_v
        write_json_atomic(vdir / "evidence.json", evidence)
        _stamp_bound(vdir, evidence)
        _set_current(root, cand_v)
        (root / "candidate").unlink()  # the shadow's job is done; its watcher goes idle
        _append_history(root, {"event": "promoted", "version": cand_v, **event, "forced": bool(reasons and force),
                               "statement": verdict.statement})
        return GateDecision(True, cand_v, table, cand_m, cur_m, reasons, evidence)


def _stamp_bound(vdir: Path, evidence: dict) -> None:
    """The sidecar states the bound it was promoted on (metrics.escape_bound); only model.json changes,
    so the model file's sha256 still holds."""
    side_path = vdir / "model.json"
    side = json.loads(side_path.read_text())
    side.setdefault("metrics", {})["escape_bound"] = {
        k: evidence[k] for k in ("statement", "candidate_upper", "confidence", "ng_parts", "candidate_escapes", "limit")}
    side["metrics"]["escape_bound"]["evidence"] = [s["name"] for s in evidence["sources"]]
    write_json_atomic(side_path, side)
    os.utime(vdir)  # a watcher keyed on the folder sees a change even on coarse-mtime filesystems


def _table(cand_m: dict, cur_m: dict | None, tol_overkill: float, ev: dict) -> str:
    lines = [comparison_table(cand_m, cur_m, 0.0, tol_overkill)] if cand_m else []
    for s in ev["sources"]:
        lines.append(f"{s['name']:<18} NG parts {s['candidate']['ng_parts']:>5}   escapes current "
                     f"{s['current']['escapes']:>3}  candidate {s['candidate']['escapes']:>3}")
        d = s.get("detail") or {}
        if "disagreements" in d:
            lines.append(f"{'':<18} {d['disagreements']} disagreements, {d['reviewed']} reviewed, "
                         f"{d['unreviewed_counted_as_candidate_escapes']} unreviewed counted as candidate escapes")
    lines.append(f"candidate: {ev['statement']}; limit {100 * ev['limit']:g} %")
    return "\n".join(lines)
