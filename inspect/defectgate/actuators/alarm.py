"""The alarm / stack-light output. Several conditions can hold it on at once (pipeline stalled,
camera lost, ejector failing, fire window missed); the lamp is on while any of them is active and
every raise is counted. It drives a plain on/off output through the same drivers as the ejector
(`set(on)`), so a Jetson pin, a gpiod line or a PLC coil all work."""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol

from ..clock import Clock
from ..errors import ActuatorError, ConfigError

log = logging.getLogger(__name__)


class Output(Protocol):
    name: str

    def set(self, on: bool) -> None: ...

    def close(self) -> None: ...


class SimulatedOutput:
    """Records every change as (time, state); what tests and the demo use."""

    name = "simulated"

    def __init__(self, clock: Clock | None = None):
        from ..clock import MonotonicClock

        self.clock = clock or MonotonicClock()
        self.changes: list[tuple[float, bool]] = []
        self.state = False

    def set(self, on: bool) -> None:
        self.state = bool(on)
        self.changes.append((self.clock.now(), self.state))

    def close(self) -> None:
        pass


class Alarm:
    def __init__(self, output: Output | None):
        self.output = output
        self.active: dict[str, str] = {}  # condition -> detail
        self.raised: dict[str, int] = {}  # condition -> how many times it was raised
        self.output_failures = 0
        self._lock = threading.Lock()

    @property
    def on(self) -> bool:
        with self._lock:
            return bool(self.active)

    def raise_(self, condition: str, detail: str = "") -> None:
        with self._lock:
            if condition in self.active:
                return
            was_on = bool(self.active)
            self.active[condition] = detail
            self.raised[condition] = self.raised.get(condition, 0) + 1
        log.error("ALARM %s: %s", condition, detail)
        if not was_on:
            self._drive(True)

    def clear(self, condition: str) -> None:
        with self._lock:
            if self.active.pop(condition, None) is None:
                return
            now_off = not self.active
        log.info("alarm cleared: %s", condition)
        if now_off:
            self._drive(False)

    def _drive(self, on: bool) -> None:
        if self.output is None:
            return
        try:
            self.output.set(on)
        except ActuatorError as exc:  # the lamp itself failed: log loudly, keep the line logic going
            self.output_failures += 1
            log.error("alarm output %s failed: %s", self.output.name, exc)

    def close(self) -> None:
        if self.output is not None:
            self._drive(False)
            self.output.close()


def open_alarm(kind: str, options: dict[str, Any], clock: Clock) -> Alarm:
    kind = getattr(kind, "value", kind)
    if kind == "none":
        return Alarm(None)
    if kind == "simulated":
        return Alarm(SimulatedOutput(clock))
    if kind in ("jetson_gpio", "gpiod", "modbus"):
        from . import open_actuator

        return Alarm(open_actuator(kind, options, clock))  # every driver has set(on)
    raise ConfigError(f"alarm.kind '{kind}' is unknown; use none, simulated, jetson_gpio, gpiod or modbus")
