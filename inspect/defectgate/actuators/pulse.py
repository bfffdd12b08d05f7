"""Ends pulses without blocking the caller: `fire()` switches the output on and hands the switch-off
to this one background thread, so the timing thread is free for the next part at once. A new
pulse before the previous one ended extends it (two close parts = one longer pulse, never a gap
that the valve could not follow anyway)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from ..errors import ActuatorError

log = logging.getLogger(__name__)


class PulseEnder:
    def __init__(self, switch_off: Callable[[], None], name: str = "pulse"):
        self._switch_off = switch_off
        self._off_at: float | None = None
        self._cv = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"{name}-off", daemon=True)
        self._thread.start()

    def schedule_off(self, duration_s: float) -> None:
        with self._cv:
            off = time.perf_counter() + duration_s
            self._off_at = off if self._off_at is None else max(self._off_at, off)
            self._cv.notify()

    def _run(self) -> None:
        while True:
            with self._cv:
                while self._off_at is None and not self._closed:
                    self._cv.wait()
                if self._off_at is None:
                    return
                left = self._off_at - time.perf_counter()
                if left > 0:
                    self._cv.wait(left)
                    continue
                self._off_at = None
            try:
                self._switch_off()
            except Exception as exc:  # a driver error must not kill the thread: log, next pulse retries
                log.error("could not end pulse: %s", exc)

    def close(self) -> None:
        """Switch off now (a pulse in progress is cut short: safe state) and stop the thread."""
        with self._cv:
            self._closed = True
            pending = self._off_at is not None
            self._off_at = None
            self._cv.notify()
        self._thread.join(1.0)
        if pending:
            try:
                self._switch_off()
            except Exception as exc:
                log.error("could not switch off on close: %s", exc)


class PulsedOutput:
    """An on/off output whose `fire(duration)` switches it on now and leaves the switch-off to a
    PulseEnder thread. A driver defines `name`, `_write(on)` and the exceptions its library raises
    (`_driver_errors`, reported as ActuatorError), and calls `_start_pulses()` once the output is ready."""

    name: str
    _pulse: PulseEnder
    _driver_errors: tuple[type[Exception], ...] = (OSError,)

    def _write(self, on: bool) -> None:
        raise NotImplementedError

    def set(self, on: bool) -> None:
        try:
            self._write(on)
        except self._driver_errors as exc:
            raise ActuatorError(f"{self.name}: could not switch the output {'on' if on else 'off'}: {exc}") from exc

    def _start_pulses(self) -> None:
        self._pulse = PulseEnder(lambda: self.set(False), self.name)

    def fire(self, duration_s: float) -> None:
        self.set(True)
        self._pulse.schedule_off(duration_s)
