"""Belt encoder readers: a callable returning the belt position in mm (or None when it cannot be
read), latched into each Frame at capture. The common industrial setup is the PLC's high-speed
counter input wired to the encoder, its 32-bit count exposed as two Modbus holding registers;
reading that is robust where counting quadrature edges in Python is not."""

from __future__ import annotations

import logging
import threading
from typing import Callable

from ..config import ConveyorSection, EncoderSection
from ..errors import ConfigError, require

log = logging.getLogger(__name__)


class ModbusEncoder:
    def __init__(self, host: str, port: int, register: int, unit: int, ticks_per_mm: float,
                 word_order: str = "low_first", timeout_s: float = 0.05):
        require("pymodbus", "station", "the Modbus belt encoder")
        from pymodbus.client import ModbusTcpClient

        self.register, self.unit, self.ticks_per_mm = register, unit, ticks_per_mm
        self.low_first = word_order == "low_first"
        self.name = f"modbus-encoder:{host}:{port}/hr{register}"
        self._client = ModbusTcpClient(host, port=port, timeout=timeout_s, retries=0)
        self._lock = threading.Lock()
        self._last: int | None = None
        self._unwrapped = 0
        self.failures = 0

    def ticks(self) -> int | None:
        """The unwrapped tick count (the PLC's 32-bit counter rolls over; we do not)."""
        from pymodbus.exceptions import ModbusException

        with self._lock:
            try:
                if not self._client.connected and not self._client.connect():
                    raise ConnectionError("no connection")
                rr = self._client.read_holding_registers(self.register, count=2, device_id=self.unit)
                if rr.isError():
                    raise ModbusException(str(rr))
            except (ModbusException, OSError) as exc:
                self.failures += 1
                if self.failures in (1, 10, 100) or self.failures % 1000 == 0:
                    log.error("%s: read failed (%s); frames carry no encoder position meanwhile", self.name, exc)
                self._client.close()
                return None
            lo, hi = (rr.registers[0], rr.registers[1]) if self.low_first else (rr.registers[1], rr.registers[0])
            raw = (hi << 16) | lo
            if self._last is not None:
                delta = (raw - self._last) & 0xFFFFFFFF
                if delta >= 1 << 31:  # the belt ran backwards a little (or the PLC reset): signed step
                    delta -= 1 << 32
                self._unwrapped += delta
            else:
                self._unwrapped = raw
            self._last = raw
            return self._unwrapped

    def __call__(self) -> float | None:
        t = self.ticks()
        return None if t is None else t / self.ticks_per_mm

    def close(self) -> None:
        with self._lock:
            self._client.close()


def open_encoder(cfg: EncoderSection, conveyor: ConveyorSection) -> Callable[[], float | None] | None:
    if cfg.kind == "none":
        return None
    if conveyor.encoder_ticks_per_mm is None:
        raise ConfigError("source.encoder.kind = modbus needs conveyor.encoder_ticks_per_mm (encoder ticks per mm "
                          "of belt travel)")
    return ModbusEncoder(cfg.host, cfg.port, cfg.holding_register, cfg.unit, conveyor.encoder_ticks_per_mm, cfg.word_order)
