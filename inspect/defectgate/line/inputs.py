"""Line input drivers behind one method, `read() -> {input name: level}`: Jetson.GPIO pins,
gpiod lines, Modbus discrete inputs of a PLC or remote I/O, or a simulated set of pins (tests,
demo). Names are those of config.INPUT_NAMES; each driver reads only the inputs it is given."""

from __future__ import annotations

import threading
from typing import Any, Protocol

from ..errors import ActuatorError, ConfigError, require
from .transport import LinkError, Reconnecting


class InputReader(Protocol):
    name: str

    def read(self) -> dict[str, bool]: ...

    def close(self) -> None: ...


class SimulatedInputs:
    """Pins set by the test or the demo (`set(name, level)`): the only stand-in, for pins only."""

    name = "simulated-inputs"

    def __init__(self, names: dict[str, int]):
        self._levels = {n: False for n in names}
        self._lock = threading.Lock()

    def set(self, name: str, level: bool) -> None:
        with self._lock:
            self._levels[name] = bool(level)

    def read(self) -> dict[str, bool]:
        with self._lock:
            return dict(self._levels)

    def close(self) -> None:
        pass


class JetsonGpioInputs:
    def __init__(self, names: dict[str, int], numbering: str = "BOARD", active_low: bool = False):
        gpio = require("Jetson.GPIO", "jetson", "line inputs on Jetson pins")
        if numbering not in ("BOARD", "BCM"):
            raise ConfigError(f"line.inputs.options.numbering = {numbering!r}; allowed: BOARD, BCM")
        self._gpio, self.pins, self.active_low = gpio, dict(names), active_low
        self.name = f"jetson_gpio-inputs:{numbering}"
        try:
            gpio.setmode(getattr(gpio, numbering))
            for pin in self.pins.values():
                gpio.setup(pin, gpio.IN)
        except (RuntimeError, ValueError) as exc:
            raise ActuatorError(f"Jetson.GPIO could not set up input pins {sorted(self.pins.values())}: {exc}") from exc

    def read(self) -> dict[str, bool]:
        return {n: bool(self._gpio.input(p)) != self.active_low for n, p in self.pins.items()}

    def close(self) -> None:
        self._gpio.cleanup(list(self.pins.values()))


class GpiodInputs:
    def __init__(self, names: dict[str, int], chip: str = "/dev/gpiochip0", active_low: bool = False):
        gpiod = require("gpiod", "jetson", "line inputs on gpiod lines")
        from gpiod.line import Direction, Value

        self.lines, self._active = dict(names), Value.ACTIVE
        settings = gpiod.LineSettings(direction=Direction.INPUT, active_low=active_low)
        try:
            self._request = gpiod.request_lines(chip, consumer="defectgate-inputs",
                                                config={off: settings for off in self.lines.values()})
        except OSError as exc:
            raise ActuatorError(f"gpiod could not request {chip} lines {sorted(self.lines.values())} as inputs: {exc}") from exc
        self.name = f"gpiod-inputs:{chip}"

    def read(self) -> dict[str, bool]:
        return {n: self._request.get_value(off) == self._active for n, off in self.lines.items()}

    def close(self) -> None:
        self._request.release()


class ModbusInputs(Reconnecting):
    """Discrete inputs (function 2) read in one request covering every mapped address."""

    def __init__(self, names: dict[str, int], host: str = "127.0.0.1", port: int = 502, unit: int = 1,
                 timeout_s: float = 0.05, reconnect_s: float = 1.0):
        require("pymodbus", "station", "line inputs over Modbus")
        from pymodbus.client import ModbusTcpClient

        super().__init__(reconnect_s)
        self.addresses, self.unit = dict(names), int(unit)
        self.name = f"modbus-inputs:{host}:{port}"
        self._first = min(self.addresses.values(), default=0)
        self._count = max(self.addresses.values(), default=0) - self._first + 1
        self._client = ModbusTcpClient(host, port=int(port), timeout=timeout_s, retries=0)

    def _open(self) -> bool:
        return bool(self._client.connect())

    def _drop(self) -> None:
        self._client.close()

    def read(self) -> dict[str, bool]:
        from pymodbus.exceptions import ModbusException

        self.ensure()
        try:
            rr = self._client.read_discrete_inputs(self._first, count=self._count, device_id=self.unit)
        except (ModbusException, OSError) as exc:
            raise self.failed(exc) from exc
        if rr.isError():
            raise LinkError(f"{self.name}: refused discrete inputs {self._first}..{self._first + self._count - 1}: {rr}")
        return {n: bool(rr.bits[a - self._first]) for n, a in self.addresses.items()}

    def close(self) -> None:
        self._client.close()


def open_inputs(kind: str, names: dict[str, int], options: dict[str, Any]) -> InputReader | None:
    kind = getattr(kind, "value", kind)
    if kind == "none" or not names:
        return None
    if kind == "simulated":
        return SimulatedInputs(names)
    if kind == "jetson_gpio":
        return JetsonGpioInputs(names, **options)
    if kind == "gpiod":
        return GpiodInputs(names, **options)
    if kind == "modbus":
        return ModbusInputs(names, **options)
    raise ConfigError(f"line.inputs.kind '{kind}' is unknown; use none, simulated, jetson_gpio, gpiod or modbus")
