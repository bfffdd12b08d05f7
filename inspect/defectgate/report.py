"""The line report: what a shift lead asks after a run. Numbers reconcile by construction:
rejected = ng_truth - escapes + overkills (each part is fired at most once)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .runstats import RunStats
from .staging import write_json_atomic


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


def line_report(stats: RunStats, backend: str = "", model_version: str = "", alarm=None, source=None) -> dict:
    captured = stats.captured
    fired = set(stats.fired)
    folded = stats.folded
    truth_known = {p: t for p, t in captured.items() if t is not None}
    any_truth = bool(truth_known) or folded["truth_known"] > 0
    ng_truth = sum(1 for t in truth_known.values() if t) + folded["ng_truth"]
    escapes = sum(1 for p, t in truth_known.items() if t and p not in fired) + folded["escapes"]
    overkills = sum(1 for p, t in truth_known.items() if not t and p in fired) + folded["overkills"]
    judged = set(stats.judged) | {v.part_id for v in stats.verdicts}
    unjudged = len(set(captured) - judged) + folded["unjudged"]
    lat = [v.latency_ms for v in stats.verdicts]  # the most recent verdicts (bounded window)
    wall = max(stats.t_end - stats.t_start, 1e-9)
    return {
        "parts": stats.parts_total,
        "ng_truth": ng_truth if any_truth else None,
        "rejected": len(fired & set(captured)) + folded["rejected"],
        "escapes": escapes if any_truth else None,
        "overkills": overkills if any_truth else None,
        "verdict_ng": stats.verdict_ng_total,
        "missed_deadlines": stats.late_decisions + unjudged,
        "unjudged_parts": unjudged,
        "frames_dropped": stats.frames_dropped,
        "inference_failures": stats.inference_failures,
        "actuator_failures": stats.actuator_failures,
        "missed_fires": stats.missed_fires,
        "frames": stats.frames,
        "model_swaps": stats.swaps,
        "alarms": dict(alarm.raised) if alarm is not None else {},
        "source": {k: getattr(source, k) for k in ("corrupt", "disconnects", "reconnects", "overwritten")
                   if hasattr(source, k)} if source is not None else {},
        "latency_ms": {"p50": _pct(lat, 50), "p99": _pct(lat, 99), "max": _pct(lat, 100)},
        "fire_error_ms": {"p50": _pct([abs(e) for e in stats.fire_errors_ms], 50),
                          "p99": _pct([abs(e) for e in stats.fire_errors_ms], 99)},
        "fps": round(stats.verdicts_total / wall, 2),
        "wall_s": round(wall, 2),
        "backend": backend,
        "model_version": model_version,
        "shadow": stats.shadow,
        # the line link (issue #23): results delivered to the PLC, confirmed rejects, the PLC's own counts
        **({"line": stats.line.report(stats.verdict_ng_total, unjudged)} if stats.line is not None else {}),
    }


def format_report(r: dict) -> str:
    def show(v):
        return "n/a" if v is None else v
    rows = [
        ("parts inspected", r["parts"]), ("NG parts (truth)", show(r["ng_truth"])),
        ("rejected", r["rejected"]), ("escapes (NG passed)", show(r["escapes"])),
        ("overkills (OK rejected)", show(r["overkills"])), ("missed deadlines", r["missed_deadlines"]),
        ("frames dropped", r["frames_dropped"]), ("missed fire windows", r.get("missed_fires", 0)),
        ("alarms raised", ", ".join(f"{k} x{v}" for k, v in r.get("alarms", {}).items()) or "none"),
        ("latency p50 / p99 ms", f"{show(r['latency_ms']['p50'])} / {show(r['latency_ms']['p99'])}"),
        ("fire error p99 ms", show(r["fire_error_ms"]["p99"])), ("throughput fps", r["fps"]),
        ("backend", r["backend"]), ("model", r["model_version"]),
    ]
    if "line" in r:
        from .line.stats import format_line

        rows += format_line(r["line"])
    width = max(len(k) for k, _ in rows)
    lines = ["line report", "-" * (width + 14)] + [f"{k:<{width}}  {v}" for k, v in rows]
    if r["ng_truth"]:
        caught = r["ng_truth"] - r["escapes"]
        lines.append(f"{'caught':<{width}}  {caught}/{r['ng_truth']} NG parts ({100 * caught / r['ng_truth']:.1f}%)")
    sh = r.get("shadow")
    if sh:  # what the candidate in shadow mode would have done on the same parts
        versions = ", ".join(f"{v} ({n} parts)" for v, n in sh["versions"].items()) or "none loaded"
        lines += [f"{'shadow candidate':<{width}}  {versions}",
                  f"{'shadow agreement':<{width}}  {sh['agree']}/{sh['parts']} parts"
                  + (f" ({100 * sh['agreement']:.1f}%)" if sh["agreement"] is not None else ""),
                  f"{'shadow NG live only':<{width}}  {sh['live_only_ng']}",
                  f"{'shadow NG cand. only':<{width}}  {sh['shadow_only_ng']}",
                  f"{'shadow skipped':<{width}}  {sh['frames_skipped']} frames, {sh['parts_unjudged']} parts unjudged"]
        t = sh.get("truth") or {}
        if t.get("parts"):
            lines.append(f"{'escapes live / cand.':<{width}}  {t['live_escapes']} / {t['shadow_escapes']} of "
                         f"{t['ng_parts']} NG parts (compared parts, truth known)")
            lines.append(f"{'overkills live / cand.':<{width}}  {t['live_overkills']} / {t['shadow_overkills']} of "
                         f"{t['parts'] - t['ng_parts']} OK parts")
    return "\n".join(lines)


def write_report(r: dict, run_dir: Path) -> Path:
    return write_json_atomic(run_dir / "report.json", r)
