"""Injectable monotonic clocks. Timing logic takes a Clock so tests run without sleeping.
Never use time.time() for timing: wall time jumps (NTP, DST); it is only for log timestamps."""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic scale."""

    def sleep_until(self, t: float) -> None:
        """Block until now() >= t."""


class MonotonicClock:
    """The real clock. sleep_until() sleeps coarsely, then spins the last stretch, because
    time.sleep() overshoots by up to a scheduler tick and a reject pulse must be on time."""

    def __init__(self, spin_s: float = 0.002):
        self.spin_s = spin_s

    def now(self) -> float:
        return time.perf_counter()

    def sleep_until(self, t: float) -> None:
        while True:
            left = t - time.perf_counter()
            if left <= 0:
                return
            if left > self.spin_s:
                time.sleep(left - self.spin_s)
            # else: busy-wait the final ~2 ms for sub-millisecond accuracy


class FakeClock:
    """A clock that only moves when told to. sleep_until() advances it instantly."""

    def __init__(self, start: float = 0.0):
        self._t = float(start)
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._t

    def advance(self, dt: float) -> None:
        with self._lock:
            self._t += dt

    def set(self, t: float) -> None:
        with self._lock:
            self._t = max(self._t, float(t))

    def sleep_until(self, t: float) -> None:
        self.set(t)
