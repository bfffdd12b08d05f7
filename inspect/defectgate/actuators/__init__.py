"""Reject actuators behind one interface, `fire(duration_s)`. Hardware drivers import lazily."""

from __future__ import annotations

from typing import Any

from ..clock import Clock
from ..errors import ConfigError
from .base import Actuator
from .simulated import SimulatedActuator


def open_actuator(kind: str, options: dict[str, Any], clock: Clock) -> Actuator:
    kind = getattr(kind, "value", kind)
    if kind == "simulated":
        unknown = set(options) - {"log"}
        if unknown:
            raise ConfigError(f"actuator.options {sorted(unknown)}: the simulated ejector takes only 'log' (a file path)")
        return SimulatedActuator(clock, **options)
    if kind == "jetson_gpio":
        from .jetson_gpio import JetsonGpioActuator

        return JetsonGpioActuator(**options)
    if kind == "gpiod":
        from .gpiod_line import GpiodActuator

        return GpiodActuator(**options)
    if kind == "modbus":
        from .modbus import ModbusCoilActuator

        return ModbusCoilActuator(**options)
    raise ConfigError(f"actuator.kind '{kind}' is unknown; use simulated, jetson_gpio, gpiod or modbus")


__all__ = ["Actuator", "SimulatedActuator", "open_actuator"]
