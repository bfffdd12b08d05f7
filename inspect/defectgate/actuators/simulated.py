"""A simulated ejector that records when it was fired, on the station clock.

`actuator.options: {log: PATH}` also writes its own fire log there: one JSON object per pulse,
`{"t": monotonic seconds, "duration_s": ...}`. It is the ejector's account of what happened, kept apart
from the station's bookkeeping, so a test (or a commissioning run) can check the line report and the
archive against the pulses the ejector really received. The pulses stream into a temp file beside PATH,
which becomes PATH when the station closes the ejector: a station runs for months, so memory keeps only
the most recent pulses (the 30-minute soak found an unbounded list of them here, docs/performance.md)."""

from __future__ import annotations

import collections
import json
import os
import threading
from pathlib import Path
from typing import TextIO

from ..clock import Clock, MonotonicClock
from ..errors import ConfigError

RECENT_PULSES = 1_000  # kept in memory, for a look at the ejector; every pulse goes to the log


class SimulatedActuator:
    name = "simulated"

    def __init__(self, clock: Clock | None = None, log: str | Path | None = None):
        self.clock = clock or MonotonicClock()
        self.recent: collections.deque[tuple[float, float]] = collections.deque(maxlen=RECENT_PULSES)
        self.pulses = 0  # every pulse since the ejector opened
        self.log = Path(log) if log else None
        self._lock = threading.Lock()
        self._out: TextIO | None = None
        self._log_error: OSError | None = None
        if self.log is not None:
            self._tmp = self.log.with_name(f".{self.log.name}.{os.getpid()}.tmp")
            try:  # a bad log path fails here, when the station opens, not at close
                self.log.parent.mkdir(parents=True, exist_ok=True)
                self._out = self._tmp.open("w")
            except OSError as exc:
                raise ConfigError(f"actuator.options.log {self.log}: the fire log cannot be written there ({exc})") from exc

    def fire(self, duration_s: float) -> None:
        with self._lock:
            t = self.clock.now()
            self.recent.append((t, duration_s))
            self.pulses += 1
            if self._out is not None and self._log_error is None:
                try:
                    self._out.write(json.dumps({"t": t, "duration_s": duration_s}) + "\n")
                except OSError as exc:  # a full disk loses the log, never the pulse; close() says so
                    self._log_error = exc

    def close(self) -> None:
        with self._lock:
            out, self._out = self._out, None
            if out is None:
                return
            try:
                out.close()
            except OSError as exc:
                self._log_error = self._log_error or exc
            if self._log_error is not None:
                self._tmp.unlink(missing_ok=True)
                raise OSError(f"simulated ejector: its fire log {self.log} could not be written "
                              f"({self._log_error}); {self.pulses} pulses were fired") from self._log_error
            self._tmp.replace(self.log)  # type: ignore[arg-type]
