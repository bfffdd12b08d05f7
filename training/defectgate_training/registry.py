"""Model registry: versioned bundles, a `current` pointer, a history with metrics, a promotion gate.

    REGISTRY/registry.json        {"format": "defectgate-registry", "schema_version": 1}
    REGISTRY/versions/v0001/      a bundle (model.onnx + model.json with "version": "v0001")
    REGISTRY/current -> versions/v0003   symlink the station config points at (model.bundle: REGISTRY/current)
    REGISTRY/candidate -> versions/v0004 a staged candidate a station judges with in shadow mode
                                  (shadow.bundle: REGISTRY/candidate); gone once it is promoted
    REGISTRY/history.jsonl        one JSON line per decision: staged, promoted, refused, rollback
    REGISTRY/versions/vNNNN/evidence.json   what a promotion on evidence rested on (evidence.py)

The gate: both candidate and current are evaluated on the same gate split through the runtime,
each at its own sidecar thresholds (the operating point it would run at). The candidate is
promoted only if its escape rate is not higher than current's + escape tolerance and its overkill
rate not higher than current's + overkill tolerance. The first candidate is promoted without a gate.

Promotion on evidence (`promote_on_evidence`, `defectgate promote --evidence shadow|replay`): the staged
candidate replaces current only when, on the gate split plus the reviewed live-vs-candidate
disagreements, it lets no more NG parts through than current and its 95 % upper bound on the escape
rate is at or below the limit (evidence.py); the bound is written into the version's sidecar
(`metrics.escape_bound`) and its evidence next to it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from defectgate.errors import BundleError, DefectgateError
from defectgate.staging import write_json_atomic

MARKER = "registry.json"


class RegistryError(DefectgateError):
    """A registry folder is missing, not a registry, or inconsistent."""


@dataclass
class GateDecision:
    promoted: bool
    version: str | None
    table: str
    candidate: dict
    current: dict | None
    reasons: list[str]
    evidence: dict | None = None


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def open_registry(root: str | Path, create: bool = False) -> Path:
    root = Path(root)
    marker = root / MARKER
    if marker.is_file():
        try:
            meta = json.loads(marker.read_text())
        except json.JSONDecodeError as exc:
            raise RegistryError(f"{marker}: not valid JSON ({exc}); restore it or choose another registry folder") from exc
        if meta.get("format") != "defectgate-registry":
            raise RegistryError(f"{marker}: not a defectgate registry (format {meta.get('format')!r})")
        return root
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise RegistryError(f"{root}: exists but is not a model registry (no {MARKER}); choose an empty or new folder")
    if not create:
        raise RegistryError(f"{root}: registry not found; the first 'defectgate promote' creates it")
    (root / "versions").mkdir(parents=True, exist_ok=True)
    write_json_atomic(marker, {"format": "defectgate-registry", "schema_version": 1, "created_at": _now()})
    return root


def versions(root: Path) -> list[str]:
    vdir = root / "versions"
    return sorted(p.name for p in vdir.iterdir() if p.is_dir() and not p.name.startswith(".")) if vdir.is_dir() else []


def current_version(root: Path) -> str | None:
    return _pointer(root, "current")


def candidate_version(root: Path) -> str | None:
    return _pointer(root, "candidate")


def _pointer(root: Path, name: str) -> str | None:
    link = root / name
    if not link.is_symlink() and not link.exists():
        return None
    target = Path(os.readlink(link)) if link.is_symlink() else None
    if target is None or not (root / target).is_dir():
        fix = "--rollback --to vNNNN" if name == "current" else "--stage BUNDLE"
        raise RegistryError(f"{link}: dangling {name} pointer; run 'defectgate promote --registry {root} {fix}'")
    return target.name


def history(root: Path) -> list[dict]:
    f = root / "history.jsonl"
    return [json.loads(line) for line in f.read_text().splitlines() if line.strip()] if f.is_file() else []


def _append_history(root: Path, event: dict) -> None:
    with open(root / "history.jsonl", "a") as f:
        f.write(json.dumps({"at": _now(), **event}) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _set_current(root: Path, version: str, name: str = "current") -> None:
    """Atomic pointer swap: a new symlink renamed over the old one."""
    tmp = root / f".{name}.{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(Path("versions") / version, tmp)
    os.replace(tmp, root / name)


def add_version(root: Path, bundle_dir: Path) -> str:
    """Copy a checked bundle into versions/vNNNN (temp folder + rename); stamp the version label."""
    from defectgate.bundle import load_bundle

    load_bundle(bundle_dir)  # refuse a damaged bundle before it enters the registry
    existing = versions(root)
    version = f"v{(int(existing[-1][1:]) + 1) if existing else 1:04d}"
    tmp = Path(tempfile.mkdtemp(prefix=".incoming-", dir=root / "versions"))
    try:
        for item in bundle_dir.iterdir():
            if item.is_file():
                shutil.copy2(item, tmp / item.name)
        sidecar = json.loads((tmp / "model.json").read_text())
        sidecar["version"] = version
        write_json_atomic(tmp / "model.json", sidecar)
        tmp.chmod(0o755)
        tmp.rename(root / "versions" / version)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return version


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def comparison_table(cand: dict, cur: dict | None, tol_escape: float, tol_overkill: float) -> str:
    rows = [("mAP50", "map50", None), ("mAP50-95", "map50_95", None),
            ("escape rate", "escape_rate", tol_escape), ("overkill rate", "overkill_rate", tol_overkill)]
    lines = [f"{'metric':<15}{'current':>10}{'candidate':>11}{'change':>9}  gate"]
    for label, key, tol in rows:
        c = cand.get(key)
        o = cur.get(key) if cur else None
        change = "" if c is None or o is None else f"{c - o:+.4f}"
        gate = "" if tol is None else f"<= current + {tol}"
        if tol is not None and c is not None and o is not None:
            gate += "  ok" if c <= o + tol + 1e-12 else "  WORSE"
        lines.append(f"{label:<15}{_fmt(o):>10}{_fmt(c):>11}{change:>9}  {gate}")
    return "\n".join(lines)


@contextlib.contextmanager
def _locked(root: Path):
    """One writer at a time (two CI jobs promoting at once would race for the next version)."""
    with open(root / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def promote(candidate: str | Path, registry: str | Path, data: str | Path, split: str = "val",
            tol_escape: float = 0.0, tol_overkill: float = 0.01, backend: str = "onnxruntime",
            force: bool = False) -> GateDecision:
    root = open_registry(registry, create=True)
    with _locked(root):
        return _promote(root, Path(candidate), data, split, tol_escape, tol_overkill, backend, force)


def _promote(root: Path, candidate: Path, data, split, tol_escape, tol_overkill, backend, force) -> GateDecision:
    from .evaluate import evaluate_model

    cand_eval = evaluate_model(candidate, data, split, target_escape=None, backend=backend)
    cur_version = current_version(root)
    cur_eval = None
    if cur_version:
        cur_eval = evaluate_model(root / "versions" / cur_version, data, split, target_escape=None, backend=backend)
    keys = ("map50", "map50_95", "escape_rate", "overkill_rate")
    cand_m = {k: cand_eval[k] for k in keys}
    cur_m = {k: cur_eval[k] for k in keys} if cur_eval else None
    reasons = []
    if cur_m:
        for key, tol in (("escape_rate", tol_escape), ("overkill_rate", tol_overkill)):
            c, o = cand_m[key], cur_m[key]
            if c is not None and o is not None and c > o + tol + 1e-12:
                reasons.append(f"{key} {c:.4f} > current {o:.4f} + tolerance {tol}")
    table = comparison_table(cand_m, cur_m, tol_escape, tol_overkill)
    event = {"candidate": str(candidate), "current": cur_version, "gate_split": f"{data}:{split}",
             "candidate_metrics": cand_m, "current_metrics": cur_m,
             "tolerances": {"escape_rate": tol_escape, "overkill_rate": tol_overkill}}
    if reasons and not force:
        _append_history(root, {"event": "refused", **event, "reasons": reasons})
        return GateDecision(False, None, table, cand_m, cur_m, reasons)
    version = add_version(root, candidate)
    _set_current(root, version)
    _append_history(root, {"event": "promoted", "version": version, **event, "forced": bool(reasons and force)})
    return GateDecision(True, version, table, cand_m, cur_m, reasons)


def rollback(registry: str | Path, to: str | None = None) -> tuple[str | None, str]:
    """Point `current` at `to`, or at the version that was current before the present one."""
    root = open_registry(registry)
    with _locked(root):
        return _rollback(root, to)


def _rollback(root: Path, to: str | None) -> tuple[str | None, str]:
    cur = current_version(root)
    if to is None:
        promoted = [e["version"] for e in history(root) if e.get("event") in ("promoted", "rollback") and e.get("version")]
        # walk back through the pointer's past values to the last one that differs from current
        previous = [v for v in reversed(promoted) if v != cur]
        if not previous:
            raise RegistryError(f"{root}: nothing to roll back to (current {cur} is the only version ever promoted)")
        to = previous[0]
    if to not in versions(root):
        raise RegistryError(f"{root}: version '{to}' not found (have {', '.join(versions(root)) or 'none'})")
    _set_current(root, to)
    _append_history(root, {"event": "rollback", "version": to, "from": cur})
    return cur, to


def status(registry: str | Path) -> str:
    root = open_registry(registry)
    cur = current_version(root)
    lines = [f"registry {root}: current {cur or 'none'}"]
    for e in history(root):
        m = e.get("candidate_metrics") or {}
        lines.append(f"  {e['at']}  {e['event']:<9} {e.get('version') or '-':<6} escape {_fmt(m.get('escape_rate'))} "
                     f"overkill {_fmt(m.get('overkill_rate'))} mAP50 {_fmt(m.get('map50'))}")
    return "\n".join(lines)


def check_bundle_path(path: str | Path) -> Path:
    p = Path(path)
    if not (p / "model.json").is_file():
        raise BundleError(f"{p}: not a bundle folder (no model.json); export one with 'defectgate export'")
    return p
