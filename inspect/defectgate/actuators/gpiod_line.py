"""Ejector (or alarm lamp) on a GPIO line through the kernel character device with libgpiod's v2
Python API (`gpiod>=2`, extra [jetson]); works on any Linux board, Jetson included.

options: chip (default /dev/gpiochip0), line (offset on that chip), active_low (default false)."""

from __future__ import annotations

from ..errors import ActuatorError, require
from .pulse import PulsedOutput


class GpiodActuator(PulsedOutput):
    name = "gpiod"

    def __init__(self, line: int, chip: str = "/dev/gpiochip0", active_low: bool = False,
                 consumer: str = "defectgate"):
        gpiod = require("gpiod", "jetson", "the gpiod actuator")
        if not hasattr(gpiod, "request_lines"):
            raise ActuatorError("the installed gpiod module is the v1 API; install libgpiod v2 bindings: "
                                "pip install 'gpiod>=2.1'")
        from gpiod.line import Direction, Value

        self._active, self._inactive = Value.ACTIVE, Value.INACTIVE
        self.line = int(line)
        settings = gpiod.LineSettings(direction=Direction.OUTPUT, output_value=Value.INACTIVE, active_low=active_low)
        try:
            self._request = gpiod.request_lines(chip, consumer=consumer, config={self.line: settings})
        except OSError as exc:
            raise ActuatorError(f"gpiod could not request {chip} line {line}: {exc} "
                                "(check the chip path, the line offset and permissions on the device)") from exc
        self.name = f"gpiod:{chip}:{self.line}"
        self._start_pulses()

    def _write(self, on: bool) -> None:
        self._request.set_value(self.line, self._active if on else self._inactive)

    def close(self) -> None:
        self._pulse.close()
        self._request.release()
