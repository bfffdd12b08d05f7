"""`defectgate bench --model A --shadow B`: does a candidate in shadow mode slow the line?

The same line, in one run, with and without the shadow: the threaded station judges the bench frames
arriving at a line rate (`--line-rate` parts/s, as a triggered camera delivers them), fires the ejector
for every part (so the timing thread is measured under the full load), and reports the live verdict
latency (capture to verdict) p50 / p99 and the fire-time error p50 / p99, plus what the shadow managed
(parts judged, frames skipped). Each variant runs in its own process and the rounds alternate
(without, with, without, ...), so both see the same machine; the best round of each is kept, as the
main bench does, and every round is in the JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .bench_workers import cpu_steal_s, steal_since


class PacedSource:
    """In-memory frames delivered at `rate` frames per second on the station's clock."""

    def __init__(self, images: list[np.ndarray], clock: Any, rate: float, parts: int):
        self.uri, self.images, self.clock, self.period, self.parts = "memory://line", images, clock, 1.0 / rate, parts
        self.exhausted = False
        self.hw = images[0].shape[:2]
        self._seq = 0
        self._t0: float | None = None

    def read(self, timeout: float):
        from .types import Frame

        if self._seq >= self.parts:
            self.exhausted = True
            return None
        now = self.clock.now()
        self._t0 = now if self._t0 is None else self._t0
        due = self._t0 + self._seq * self.period
        if due - now > timeout:
            self.clock.sleep_until(now + timeout)
            return None
        self.clock.sleep_until(due)
        frame = Frame(image=self.images[self._seq % len(self.images)], t_capture=self.clock.now(), seq=self._seq,
                      part_id=self._seq, source=self.uri)
        self._seq += 1
        return frame

    def close(self) -> None:
        self.exhausted = True


def _p(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


def worker_line(bundle: str, shadow: str, frames_dir: str, backend: str, threads: int, rate: float,
                parts: int) -> dict:
    from .clock import MonotonicClock
    from .config import load_config
    from .station import build_station

    images = [cv2.imread(str(p)) for p in sorted(Path(frames_dir).glob("*.png"))]
    clock = MonotonicClock()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(None, [
            f"model.bundle={bundle}", f"model.backend={backend}", f"model.threads={threads}",
            f"station.run_dir={tmp}", "alarm.kind=none", "archive.save_ng_images=false",
            "conveyor.belt_speed_mm_s=600", "conveyor.camera_to_ejector_mm=300",
            *([f"shadow.bundle={shadow}", "shadow.watch_s=0"] if shadow else []),
        ])
        built = build_station(cfg, clock, source=PacedSource(images, clock, rate, parts))
        resolve = built.station.scheduler.resolve  # fire for every part: the timing thread under full load
        built.station.scheduler.resolve = lambda part, reject, now: resolve(part, True, now)  # type: ignore[method-assign]
        steal0 = cpu_steal_s()
        stats = built.station.run()
        steal_s = steal_since(steal0)
        built.close()
    latency = [v.latency_ms for v in stats.verdicts]
    errors = [abs(e) for e in stats.fire_errors_ms]
    sh = stats.shadow or {}
    return {"shadow": bool(shadow), "parts": len(latency), "latency_ms_p50": _p(latency, 50),
            "latency_ms_p99": _p(latency, 99), "fire_error_ms_p50": _p(errors, 50),
            "fire_error_ms_p99": _p(errors, 99), "fires": len(errors), "late_decisions": stats.late_decisions,
            "frames_dropped": stats.frames_dropped, "shadow_parts": sh.get("parts"),
            "shadow_frames_skipped": sh.get("frames_skipped"), "shadow_agreement": sh.get("agreement"),
            "steal_s": steal_s}


def _spawn(args: list[str], timeout: float = 1800) -> dict:
    proc = subprocess.run([sys.executable, "-m", "defectgate.bench_shadow", "worker", *args], capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode != 0:
        return {"error": " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:]) or f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_shadow(bundle: Path, shadow: Path, frames_dir: Path, backend: str, threads: int, rounds: int, rate: float,
               parts: int) -> dict:
    from .bench import machine

    results: dict[str, list[dict]] = {"without": [], "with": []}
    for _ in range(rounds):
        for key, cand in (("without", ""), ("with", str(shadow))):
            results[key].append(_spawn([str(bundle), cand, str(frames_dir), backend, str(threads), str(rate),
                                        str(parts)]))
    best = {k: min((r for r in v if "error" not in r), key=lambda r: r["latency_ms_p99"], default=v[0])
            for k, v in results.items()}
    return {"kind": "shadow", "bundle": str(bundle), "shadow_bundle": str(shadow), "backend": backend,
            "line_rate_hz": rate, "parts_per_round": parts, "rounds": results, "best": best, "machine": machine(),
            "at": time.strftime("%Y-%m-%dT%H:%M:%S")}


def table_shadow(r: dict) -> str:
    rows = [("", "without shadow", "with shadow")]
    for label, key in (("live latency p50 ms", "latency_ms_p50"), ("live latency p99 ms", "latency_ms_p99"),
                       ("fire error p50 ms", "fire_error_ms_p50"), ("fire error p99 ms", "fire_error_ms_p99"),
                       ("pulses", "fires"), ("late decisions", "late_decisions"), ("frames dropped", "frames_dropped"),
                       ("shadow parts judged", "shadow_parts"), ("shadow frames skipped", "shadow_frames_skipped")):
        rows.append((label, *(str(r["best"][k].get(key, r["best"][k].get("error", "-"))) for k in ("without", "with"))))
    width = [max(len(row[i]) for row in rows) for i in range(3)]
    head = f"line at {r['line_rate_hz']:g} parts/s, {r['parts_per_round']} parts a round, best of " \
           f"{len(r['rounds']['with'])} alternating rounds ({r['backend']})"
    return "\n".join([head] + [f"{a:<{width[0]}}  {b:>{width[1]}}  {c:>{width[2]}}" for a, b, c in rows])


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "worker":
        import logging

        logging.basicConfig(level=logging.WARNING)
        a = sys.argv[2:]
        print(json.dumps(worker_line(a[0], a[1], a[2], a[3], int(a[4]), float(a[5]), int(a[6]))))
    else:
        raise SystemExit("use: defectgate bench --model A --shadow B")
