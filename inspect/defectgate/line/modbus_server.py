"""A real Modbus TCP server (pymodbus) in a background thread with its own event loop: what the
station serves when the PLC polls it (`modbus_server` transport), and what `defectgate plc-sim`
serves as the simulated PLC. Holding registers, coils and discrete inputs, addresses from 0, and
thread-safe `read`/`write` for the owner's side."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading

from ..errors import ConfigError, require

log = logging.getLogger(__name__)


def port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


class RegisterServer:
    def __init__(self, host: str, port: int, registers: int = 64, bits: int = 64, what: str = "Modbus server"):
        require("pymodbus", "station", what)
        if not port_free(host, port):
            raise ConfigError(f"{what}: {host}:{port} is already in use (another server, or a station still "
                              "running?); pick another port or stop the other process")
        logging.getLogger("pymodbus").setLevel(logging.ERROR)
        self.host, self.port, self.what = host, port, what
        self._registers, self._bits = registers, bits
        self.loop = asyncio.new_event_loop()
        self._server = None
        self._error: BaseException | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"modbus-server:{port}", daemon=True)
        self._thread.start()
        if not self._ready.wait(5.0) or self._error is not None:
            raise ConfigError(f"{what}: could not listen on {host}:{port}: {self._error}")

    def _run(self) -> None:
        from pymodbus.server import ModbusTcpServer
        from pymodbus.simulator import DataType, SimData, SimDevice

        asyncio.set_event_loop(self.loop)

        def block(n: int, bits: bool) -> list:
            kind = DataType.BITS if bits else DataType.REGISTERS
            return [SimData(0, count=n, values=False if bits else 0, datatype=kind)]

        async def serve() -> None:
            device = SimDevice(id=0, simdata=(block(self._bits, True), block(self._bits, True),
                                              block(self._registers, False), block(self._registers, False)))
            self._server = ModbusTcpServer(device, address=(self.host, self.port))
            await self._server.serve_forever(background=True)
            self._ready.set()
            await self._server.serving

        try:
            self.loop.run_until_complete(serve())
        except (OSError, RuntimeError) as exc:
            self._error = exc
            self._ready.set()

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(2.0)

    # function codes: 1 coils, 2 discrete inputs, 3 holding registers
    def read(self, address: int, count: int, fc: int = 3) -> list[int]:
        return [int(v) for v in self._call(self._server.async_getValues(0, fc, address, count))]

    def write(self, address: int, values: list[int] | list[bool], fc: int = 3) -> None:
        self._call(self._server.async_setValues(0, fc if fc != 3 else 16, address, list(values)))

    def transact(self, reads: list[tuple[int, int, int]] = (),
                 writes: list[tuple[int, list, int]] = ()) -> list[list[int]]:
        """Several reads `(address, count, fc)` and writes `(address, values, fc)` in one hop to the
        server's loop (the simulated PLC's scan: a hop per access starved it on a busy machine)."""
        async def run() -> list[list[int]]:
            out = [[int(v) for v in await self._server.async_getValues(0, fc, a, n)] for a, n, fc in reads]
            for a, values, fc in writes:
                await self._server.async_setValues(0, fc if fc != 3 else 16, a, list(values))
            return out

        return self._call(run())

    def close(self) -> None:
        if self._server is not None and self.loop.is_running():
            try:
                self._call(self._server.shutdown())
            except (RuntimeError, TimeoutError) as exc:
                log.warning("%s: shutdown: %s", self.what, exc)
        self._thread.join(5.0)
