"""The result block over Modbus TCP (pymodbus, extra [station]).

`ModbusClientTransport`: the station is the client of the PLC's holding registers (the usual
setup: the block lives in the PLC at `base`). One Write Multiple Registers (words 0..15) and one
Read Holding Registers (words 16..31) per cycle.
`ModbusServerTransport`: the station serves the block itself at `base` and the PLC polls it
(read 0..15, write 16..31), for PLCs that can only be Modbus clients."""

from __future__ import annotations

from ..errors import require
from .block import BLOCK_WORDS, STATION_WORDS
from .modbus_server import RegisterServer
from .transport import LinkError, Reconnecting

PLC_WORDS = BLOCK_WORDS - STATION_WORDS


class ModbusClientTransport(Reconnecting):
    def __init__(self, host: str, port: int = 502, base: int = 0, unit: int = 1, timeout_s: float = 0.1,
                 reconnect_s: float = 1.0):
        require("pymodbus", "station", "the Modbus result block")
        from pymodbus.client import ModbusTcpClient

        super().__init__(reconnect_s)
        self.host, self.port, self.base, self.unit = host, int(port), int(base), int(unit)
        self.name = f"modbus:{host}:{self.port}/hr{self.base}"
        self._client = ModbusTcpClient(host, port=self.port, timeout=timeout_s, retries=0)

    def _open(self) -> bool:
        return bool(self._client.connect())

    def _drop(self) -> None:
        self._client.close()

    def exchange(self, station_words: list[int]) -> list[int]:
        from pymodbus.exceptions import ModbusException

        self.ensure()
        try:
            wr = self._client.write_registers(self.base, list(station_words), device_id=self.unit)
            rr = self._client.read_holding_registers(self.base + STATION_WORDS, count=PLC_WORDS, device_id=self.unit)
        except (ModbusException, OSError) as exc:
            raise self.failed(exc) from exc
        for resp in (wr, rr):
            if resp.isError():  # the PLC answers but refuses: wrong address or unit, not a dead link
                self.failures += 1
                raise LinkError(f"{self.name}: PLC refused the request: {resp} (check line.modbus.base and unit: "
                                f"the block needs holding registers {self.base}..{self.base + BLOCK_WORDS - 1})")
        return list(rr.registers)

    def close(self) -> None:
        self._client.close()


class ModbusServerTransport:
    def __init__(self, host: str = "0.0.0.0", port: int = 502, base: int = 0):
        self.base = int(base)
        self.name = f"modbus-server:{host}:{port}/hr{self.base}"
        self.server = RegisterServer(host, int(port), registers=self.base + BLOCK_WORDS, what="line.modbus_server")

    def exchange(self, station_words: list[int]) -> list[int]:
        try:
            self.server.write(self.base, list(station_words))
            return self.server.read(self.base + STATION_WORDS, PLC_WORDS)
        except (RuntimeError, TimeoutError) as exc:
            raise LinkError(f"{self.name}: the server thread does not answer: {exc}") from exc

    def close(self) -> None:
        self.server.close()
