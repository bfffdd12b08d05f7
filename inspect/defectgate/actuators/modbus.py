"""Ejector (or alarm lamp) as a coil on a PLC over Modbus TCP (pymodbus, extra [station]).

options: host, port (502), coil (address), unit (device id, 1), timeout_s (0.1),
plc_resets (false: we write the coil back to 0 after the pulse; true: the PLC program resets it,
e.g. when it runs its own pulse timer), reconnect_s (1.0).

The line must never wait on a dead PLC: `fire()` fails at once with ActuatorError while the link
is down (the station counts it and raises the alarm), and a background thread reconnects."""

from __future__ import annotations

import logging
import threading

from ..errors import ActuatorError, ConfigError, require
from .pulse import PulseEnder

log = logging.getLogger(__name__)


class ModbusCoilActuator:
    name = "modbus"

    def __init__(self, host: str, port: int = 502, coil: int = 0, unit: int = 1, timeout_s: float = 0.1,
                 plc_resets: bool = False, reconnect_s: float = 1.0):
        require("pymodbus", "station", "the modbus actuator")
        from pymodbus.client import ModbusTcpClient

        if not 0 <= int(coil) <= 65535:
            raise ConfigError(f"actuator.options.coil = {coil}: a Modbus coil address is 0..65535")
        self.host, self.port, self.coil, self.unit = host, int(port), int(coil), int(unit)
        self.name = f"modbus:{host}:{self.port}/coil{self.coil}"
        self._client = ModbusTcpClient(host, port=self.port, timeout=timeout_s, retries=0)
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._stop = threading.Event()
        self.reconnect_s = reconnect_s
        self.failures = 0
        self._connect()  # one synchronous try so that a wrong address shows up at start
        if not self._connected.is_set():
            log.error("%s: PLC unreachable at start; rejects will fail and the alarm will be raised "
                      "until it answers", self.name)
        self._reconnector = threading.Thread(target=self._keep_connected, name="modbus-reconnect", daemon=True)
        self._reconnector.start()
        self._pulse = None if plc_resets else PulseEnder(lambda: self.set(False), self.name)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def _connect(self) -> None:
        with self._lock:
            try:
                ok = bool(self._client.connect())
            except Exception as exc:  # pymodbus raises its own ConnectionException / OSError variants
                log.debug("modbus connect failed: %s", exc)
                ok = False
        if ok:
            self._connected.set()
        else:
            self._connected.clear()

    def _keep_connected(self) -> None:
        while not self._stop.wait(self.reconnect_s):
            if not self._connected.is_set():
                self._connect()
                if self._connected.is_set():
                    log.info("%s: PLC link back", self.name)

    def _write(self, value: bool) -> None:
        if not self._connected.is_set():
            self.failures += 1
            raise ActuatorError(f"{self.name}: PLC at {self.host}:{self.port} is unreachable (reconnecting every "
                                f"{self.reconnect_s:g} s); check the cable, the PLC and actuator.options")
        from pymodbus.exceptions import ModbusException

        with self._lock:
            try:
                response = self._client.write_coil(self.coil, value, device_id=self.unit)
            except (ModbusException, OSError) as exc:
                self._connected.clear()
                self._client.close()
                self.failures += 1
                raise ActuatorError(f"{self.name}: write failed, PLC link lost: {exc}") from exc
        if response.isError():
            self.failures += 1
            raise ActuatorError(f"{self.name}: PLC refused the coil write: {response} "
                                "(check the coil address and device id in actuator.options)")

    def set(self, on: bool) -> None:
        self._write(bool(on))

    def fire(self, duration_s: float) -> None:
        self._write(True)
        if self._pulse is not None:
            self._pulse.schedule_off(duration_s)

    def close(self) -> None:
        self._stop.set()
        if self._pulse is not None:
            self._pulse.close()
        with self._lock:
            self._client.close()
