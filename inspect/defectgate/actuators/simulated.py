"""A simulated ejector that records when it was fired, on the station clock.

`actuator.options: {log: PATH}` also writes its own fire log there when the station closes it: one JSON
object per pulse, `{"t": monotonic seconds, "duration_s": ...}`. It is the ejector's account of what
happened, kept apart from the station's bookkeeping, so a test (or a commissioning run) can check the
line report and the archive against the pulses the ejector really received."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from ..clock import Clock, MonotonicClock
from ..staging import write_text_atomic


class SimulatedActuator:
    name = "simulated"

    def __init__(self, clock: Clock | None = None, log: str | Path | None = None):
        self.clock = clock or MonotonicClock()
        self.fired: list[tuple[float, float]] = []  # (time, duration)
        self.log = Path(log) if log else None
        self._lock = threading.Lock()

    def fire(self, duration_s: float) -> None:
        with self._lock:
            self.fired.append((self.clock.now(), duration_s))

    def close(self) -> None:
        if self.log is None:
            return
        with self._lock:
            lines = [json.dumps({"t": t, "duration_s": d}) for t, d in self.fired]
        write_text_atomic(self.log, "".join(line + "\n" for line in lines))
