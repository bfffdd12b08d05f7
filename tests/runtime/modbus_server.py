"""A real pymodbus TCP server on 127.0.0.1 in a background thread (the PLC stand-in); coils are
read back through a second, real Modbus client."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

from pymodbus.client import ModbusTcpClient
from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
from pymodbus.server import ModbusTcpServer

logging.getLogger("pymodbus").setLevel(logging.ERROR)  # the classic datastore API warns it is deprecated


class PlcServer:
    def __init__(self, port: int):
        self.port = port
        # pymodbus blocks are 1-based: protocol address 0 = block address 1
        self._context = ModbusServerContext(
            devices={1: ModbusDeviceContext(co=ModbusSequentialDataBlock(1, [False] * 64),
                                             hr=ModbusSequentialDataBlock(1, [0] * 64))}, single=False)
        self.loop = asyncio.new_event_loop()
        self.server = None
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self._reader: ModbusTcpClient | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def serve():
            self.server = ModbusTcpServer(self._context, address=("127.0.0.1", self.port))
            self.loop.call_soon(self._ready.set)
            await self.server.serve_forever()

        self.loop.run_until_complete(serve())

    def start(self) -> "PlcServer":
        self.thread.start()
        self._ready.wait(5)
        time.sleep(0.2)  # let the listener bind
        return self

    def coil(self, address: int) -> bool:
        if self._reader is None:
            self._reader = ModbusTcpClient("127.0.0.1", port=self.port, timeout=1)
            self._reader.connect()
        return bool(self._reader.read_coils(address, count=1, device_id=1).bits[0])

    def set_counter(self, register: int, value: int) -> None:
        """The PLC's 32-bit high-speed counter, low word first, in two holding registers."""
        self.coil(0)  # make sure the reader client is connected
        self._reader.write_registers(register, [value & 0xFFFF, (value >> 16) & 0xFFFF], device_id=1)

    def stop(self) -> None:
        if self._reader is not None:
            self._reader.close()
        if self.server is not None:
            asyncio.run_coroutine_threadsafe(self.server.shutdown(), self.loop).result(5)
        self.thread.join(5)
