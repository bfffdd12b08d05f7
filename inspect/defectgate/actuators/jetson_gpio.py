"""Ejector (or alarm lamp) on a Jetson header pin through NVIDIA's Jetson.GPIO library (extra
[jetson]). Wire the pin to an opto-isolated relay or valve driver, never straight to a solenoid.

options: pin (header number in the chosen numbering), numbering: BOARD|BCM (default BOARD),
active_high: true|false (default true)."""

from __future__ import annotations

from ..errors import ActuatorError, ConfigError, require
from .pulse import PulsedOutput


class JetsonGpioActuator(PulsedOutput):
    name = "jetson_gpio"
    _driver_errors = (RuntimeError, ValueError)  # what Jetson.GPIO raises for bad pins / no access

    def __init__(self, pin: int, numbering: str = "BOARD", active_high: bool = True):
        gpio = require("Jetson.GPIO", "jetson", "the jetson_gpio actuator")
        if numbering not in ("BOARD", "BCM"):
            raise ConfigError(f"actuator.options.numbering = {numbering!r}; allowed: BOARD, BCM")
        self._gpio, self.pin = gpio, int(pin)
        self._on = gpio.HIGH if active_high else gpio.LOW
        self._off = gpio.LOW if active_high else gpio.HIGH
        try:
            gpio.setmode(getattr(gpio, numbering))
            gpio.setup(self.pin, gpio.OUT, initial=self._off)
        except (RuntimeError, ValueError) as exc:  # Jetson.GPIO raises these for bad pins / no access
            raise ActuatorError(f"Jetson.GPIO could not set up {numbering} pin {pin} as output: {exc} "
                                "(check the pin number and that the user is in the 'gpio' group)") from exc
        self.name = f"jetson_gpio:{numbering}{self.pin}"
        self._start_pulses()

    def _write(self, on: bool) -> None:
        self._gpio.output(self.pin, self._on if on else self._off)

    def close(self) -> None:
        self._pulse.close()
        self.set(False)
        self._gpio.cleanup(self.pin)
