"""The link worker: one thread that runs the handshake against a transport every `cycle_s`.
It is the only thread that talks to the PLC, so a dead or slow PLC only ever delays this thread;
the station's threads only queue results into the handshake (a lock held for microseconds)."""

from __future__ import annotations

import logging
import threading
from typing import Callable

from ..clock import Clock
from .block import decode_plc, encode_station
from .handshake import Handshake
from .transport import BlockTransport, LinkError

log = logging.getLogger(__name__)


class LinkWorker:
    def __init__(self, handshake: Handshake, transport: BlockTransport, clock: Clock, cycle_s: float = 0.01,
                 after_cycle: Callable[[], None] | None = None):
        self.handshake, self.transport, self.clock, self.cycle_s = handshake, transport, clock, cycle_s
        self.after_cycle = after_cycle
        self.link_up = False
        self.cycles = 0
        self.link_failures = 0
        self.last_error = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="line-link", daemon=True)

    def start(self) -> "LinkWorker":
        self._thread.start()
        return self

    def cycle(self) -> None:
        """One exchange (the thread calls it; tests may call it directly)."""
        hs = self.handshake
        words = encode_station(hs.station_block(self.clock.now()))
        try:
            plc = decode_plc(self.transport.exchange(words))
        except LinkError as exc:
            if self.link_up or not self.link_failures:
                log.error("%s", exc)
            self.link_up, self.last_error = False, str(exc)
            self.link_failures += 1
            hs.link_lost(self.clock.now())
        else:
            if not self.link_up:
                log.info("%s: result block link up", self.transport.name)
            self.link_up = True
            hs.take_plc(plc, self.clock.now())
        self.cycles += 1
        if self.after_cycle is not None:
            self.after_cycle()

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = self.clock.now()
            self.cycle()
            self._stop.wait(max(0.0, self.cycle_s - (self.clock.now() - t0)))

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5.0)
