"""The actuator interface: one method. Drivers for real hardware import their libraries only when
constructed, so a station without that hardware never needs them."""

from __future__ import annotations

from typing import Protocol


class Actuator(Protocol):
    name: str

    def fire(self, duration_s: float) -> None:
        """Energise the output for `duration_s` seconds. Must return quickly (the pulse may end
        asynchronously); raises defectgate.errors.ActuatorError when the output cannot be driven."""

    def close(self) -> None: ...
