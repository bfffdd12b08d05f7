"""A simulated ejector that records when it was fired, on the station clock."""

from __future__ import annotations

import threading

from ..clock import Clock, MonotonicClock


class SimulatedActuator:
    name = "simulated"

    def __init__(self, clock: Clock | None = None):
        self.clock = clock or MonotonicClock()
        self.fired: list[tuple[float, float]] = []  # (time, duration)
        self._lock = threading.Lock()

    def fire(self, duration_s: float) -> None:
        with self._lock:
            self.fired.append((self.clock.now(), duration_s))

    def close(self) -> None:
        pass
