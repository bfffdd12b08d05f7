"""Helpers for the line tests (a uniquely named module rather than `from conftest import`: several
test folders have a conftest.py, and which one `conftest` names depends on what pytest collected first)."""

from __future__ import annotations

import socket
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond, timeout: float = 5.0, step: float = 0.005) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(step)
    return bool(cond())


class S7Server:
    """python-snap7's own S7 server on 127.0.0.1 with DB `db` (the registered bytearray is live)."""

    def __init__(self, db: int = 100, size: int = 128, port: int | None = None):
        from snap7.server import Server
        from snap7.type import SrvArea

        self.port = port or free_port()
        self.data = bytearray(size)
        self.server = Server(log=False)
        self.server.register_area(SrvArea.DB, db, self.data)
        self.server.start_to("127.0.0.1", self.port)

    def stop(self) -> None:
        self.server.stop()
