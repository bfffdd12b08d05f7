"""Where the CPU goes in the threaded station, by the role of each thread, per part judged.

Why the bench records it: the engine already takes every core, so whatever else the station does
on the same cores (capture and letterbox, decode and decision, the timing thread's spin before each
pulse) is taken from the engine. With C cores the station judges at most C x 1000 / (CPU ms per
part) parts/s, and the single-stream throughput ratio is bounded by the engine's share of the CPU
(docs/performance.md, "Where the CPU goes"). Linux only (/proc); elsewhere nothing is recorded."""

from __future__ import annotations

import os
import threading
from typing import Callable

ROLES = ("engine", "capture", "decide", "timing", "other")


def thread_cpu_s(pid: int | str = "self") -> dict[int, float]:
    """CPU seconds (user + system) of every live thread of a process, by native thread id; {} where
    /proc cannot be read. Resolution: one clock tick (10 ms)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, float] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()  # the name in () may hold spaces
            out[int(tid)] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        except (OSError, ValueError, IndexError):  # the thread ended while we read
            continue
    return out


def role_of(name: str | None) -> str:
    """A thread's role from its Python name (pipeline.Station names its threads). A thread Python
    did not start is the engine's own worker (OpenVINO's, ONNX Runtime's)."""
    if name is None or name.startswith("inference-"):
        return "engine"
    return name if name in ROLES else "other"


class CpuWindow:
    """Per-role CPU between two `mark(parts)` calls (from any thread, e.g. at the 20th and 80th
    percent of the verdicts, when every station thread is running), divided by the parts judged in
    between. `processes()` names other processes to count (the timing process, as "timing")."""

    def __init__(self, processes: Callable[[], dict[str, int]] = dict):
        self.processes = processes
        self._marks: list[tuple[int, dict[str, float]]] = []
        self._lock = threading.Lock()

    def _by_role(self) -> tuple[dict[str, float], dict[str, int]]:
        names = {t.native_id: t.name for t in threading.enumerate()}
        totals = dict.fromkeys(ROLES, 0.0)
        for tid, seconds in thread_cpu_s().items():
            totals[role_of(names.get(tid))] += seconds
        processes = dict(self.processes())
        for role, pid in processes.items():
            totals[role] += sum(thread_cpu_s(pid).values())
        return totals, processes

    def mark(self, parts: int) -> None:
        snapshot = self._by_role()
        with self._lock:
            self._marks.append((parts, *snapshot))

    def per_part_ms(self) -> dict[str, float] | None:
        """{role: CPU ms per part, ..., "total": ...} over the first and last mark; None without two
        marks a part apart, without /proc, or when a counted process was restarted in between (the
        new one's CPU is not a difference)."""
        with self._lock:
            if len(self._marks) < 2:
                return None
            (p0, a, pids0), (p1, b, pids1) = self._marks[0], self._marks[-1]
        if p1 <= p0 or not any(b.values()) or pids0 != pids1:
            return None
        out = {role: round((b[role] - a[role]) * 1000.0 / (p1 - p0), 3) for role in ROLES}
        out["total"] = round(sum(out[r] for r in ROLES), 3)
        return out
