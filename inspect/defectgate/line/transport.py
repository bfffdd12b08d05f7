"""Transports for the result block, behind one method: `exchange(station_words) -> plc_words`
writes words 0..15 and returns words 16..31 (block.py). One exchange per link cycle. A transport
never retries inside `exchange` and never blocks longer than its timeout: it raises LinkError and
the link worker tries again next cycle (so a dead PLC costs one timeout per reconnect period, in
the worker's thread, never in the station's)."""

from __future__ import annotations

import logging
import time
from typing import Protocol

from ..errors import ActuatorError

log = logging.getLogger(__name__)


class LinkError(ActuatorError):
    """The PLC link failed this cycle (unreachable, refused, timed out)."""


class BlockTransport(Protocol):
    name: str

    def exchange(self, station_words: list[int]) -> list[int]: ...

    def close(self) -> None: ...


class Reconnecting:
    """Connect at most once per `reconnect_s` while the peer is down, so a dead PLC costs one
    connect timeout per period instead of one per cycle. Subclasses implement _open/_drop."""

    def __init__(self, reconnect_s: float):
        self.reconnect_s = reconnect_s
        self._next_try = 0.0
        self.connected = False
        self.failures = 0
        self.errors: tuple[type[BaseException], ...] = (OSError, RuntimeError)  # what the library raises

    def _open(self) -> bool:
        raise NotImplementedError

    def _drop(self) -> None:
        raise NotImplementedError

    def ensure(self) -> None:
        if self.connected:
            return
        now = time.monotonic()
        if now < self._next_try:
            raise LinkError(f"{self.name}: PLC unreachable, next connect attempt in {self._next_try - now:.2f} s")
        self._next_try = now + self.reconnect_s
        try:
            self.connected = bool(self._open())
        except self.errors as exc:
            self.connected = False
            raise LinkError(f"{self.name}: cannot connect: {exc}") from exc
        if not self.connected:
            raise LinkError(f"{self.name}: cannot connect (check host, port and that the PLC is running)")
        log.info("%s: connected", self.name)

    def failed(self, exc: BaseException) -> LinkError:
        self.failures += 1
        self.connected = False
        self._drop()
        return LinkError(f"{self.name}: link lost: {exc}")

    name = "link"
