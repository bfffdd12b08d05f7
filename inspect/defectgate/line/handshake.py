"""Result handshake with the PLC (`plc_tracks` mode), pure and clock-injected: no I/O, no threads
of its own. A link worker calls `station_block(now)` to get what to write and `take_plc(block,
now)` with what it read, once per cycle; the station calls `submit()` per part.

The protocol (In-Sight style): each result gets a sequence number; the block presents the oldest
un-acked result with the result-valid bit; the PLC copies `result_seq` into `ack_seq`; the next
result is then presented. Results wait in a FIFO (default 8). A result that is not acked within
`ack_timeout_s` of being submitted is dropped as *undelivered* (counted, ACK_TIMEOUT bit, event),
because by then its part is on its way to the ejector and the PLC rejects a part without a result.
A result that finds the FIFO full is never queued and never silently lost: FIFO_FULL is set, it is
counted and reported undelivered at once. Every submitted result ends in exactly one event,
`delivered` or `undelivered`.
"""

from __future__ import annotations

import collections
import re
import threading
import zlib
from dataclasses import dataclass

from ..clock import Clock
from ..types import Verdict
from .block import PlcBits, PlcBlock, ResultCode, StationBits, StationBlock, StationState
from .events import EventKind, LineEvent

U32 = 0xFFFFFFFF


@dataclass
class PartResult:
    part_id: int
    acquisition_id: int
    code: ResultCode
    defect_mask: int = 0
    top_confidence: int = 0  # x 10000
    model_id: int = 0
    seq: int = 0
    t_submitted: float = 0.0


def model_id(version: str) -> int:
    """Registry versions vNNNN map to NNNN; anything else to a 16-bit CRC of the string."""
    m = re.fullmatch(r"v?(\d{1,5})", version.strip())
    if m and int(m.group(1)) <= 0xFFFF:
        return int(m.group(1))
    return zlib.crc32(version.encode()) & 0xFFFF


def result_from_verdict(verdict: Verdict, acquisition_id: int) -> PartResult:
    if verdict.failsafe:
        code = ResultCode.NG_FAILSAFE
    else:
        code = ResultCode.NG if verdict.is_ng else ResultCode.OK
    mask = 0
    for cid in set(verdict.detections.class_id.tolist()):
        mask |= 1 << min(int(cid), 31)
    conf = float(verdict.detections.confidence.max()) if len(verdict.detections) else 0.0
    return PartResult(verdict.part_id, acquisition_id & U32, code, mask, round(conf * 10000), model_id(verdict.model_version))


class Handshake:
    def __init__(self, clock: Clock, fifo_size: int = 8, ack_timeout_s: float = 0.5, heartbeat_s: float = 0.1,
                 plc_timeout_s: float = 1.0):
        if fifo_size < 1:
            raise ValueError(f"fifo_size = {fifo_size}: at least 1")
        self.clock, self.fifo_size, self.ack_timeout_s = clock, fifo_size, ack_timeout_s
        self.heartbeat_s, self.plc_timeout_s = heartbeat_s, plc_timeout_s
        self._fifo: collections.deque[PartResult] = collections.deque()
        self._events: collections.deque[LineEvent] = collections.deque()
        self._triggers: collections.deque[int] = collections.deque(maxlen=fifo_size)
        self._lock = threading.Lock()
        self._seq = 0
        self._last: PartResult | None = None  # the last presented result (its fields stay in the block)
        self._bits = StationBits(0)
        self._heartbeat, self._t_heartbeat = 0, clock.now()
        self.state = StationState.INITIALIZED
        self.plc = PlcBlock()
        self.plc_first: PlcBlock | None = None  # the first block read: the PLC's counters before this run
        self._trigger_came = threading.Condition(self._lock)
        self._plc_seen: tuple[int, float] | None = None  # (plc_heartbeat, when it last moved)
        self.plc_alive = False
        self._trigger_count: int | None = None
        self.counts = dict.fromkeys(("submitted", "delivered", "fifo_full", "ack_timeouts", "trigger_overruns",
                                     "triggers", "triggers_lost"), 0)

    # ---- the station's side ----
    def submit(self, result: PartResult) -> bool:
        """Queue a result. False when the FIFO is full: it is reported undelivered now."""
        now = self.clock.now()
        with self._lock:
            self.counts["submitted"] += 1
            result.t_submitted = now
            if len(self._fifo) >= self.fifo_size:
                self.counts["fifo_full"] += 1
                self._bits |= StationBits.FIFO_FULL
                self._event(EventKind.undelivered, now, result, "fifo_full")
                return False
            self._seq = self._seq % 0xFFFF + 1  # 1..65535: 0 means "no result"
            result.seq = self._seq
            self._fifo.append(result)
            return True

    def take_trigger(self) -> int | None:
        """The oldest acquisition ID the PLC triggered that no captured part has claimed yet."""
        with self._lock:
            return self._triggers.popleft() if self._triggers else None

    def wait_trigger(self, timeout_s: float) -> int | None:
        """`take_trigger`, waiting up to `timeout_s` for the PLC's next trigger (line.trigger: plc)."""
        with self._trigger_came:
            self._trigger_came.wait_for(lambda: bool(self._triggers), timeout_s)
            return self._triggers.popleft() if self._triggers else None

    def set_flag(self, bit: StationBits, on: bool) -> None:
        with self._lock:
            self._bits = self._bits | bit if on else self._bits & ~bit

    def events(self) -> list[LineEvent]:
        with self._lock:
            out = list(self._events)
            self._events.clear()
        return out

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._fifo)

    # ---- the link worker's side ----
    def station_block(self, now: float) -> StationBlock:
        with self._lock:
            self._expire(now)
            if now - self._t_heartbeat >= self.heartbeat_s:
                self._heartbeat = (self._heartbeat + 1) & 0xFFFF
                self._t_heartbeat = now
            head = self._fifo[0] if self._fifo else None
            if head is not None:
                self._last = head
            shown = head or self._last
            bits = self._bits | (StationBits.RESULT_VALID if head is not None else 0)
            return StationBlock(
                heartbeat=self._heartbeat, state=int(self.state), status=int(bits),
                result_seq=shown.seq if shown else 0, acquisition_id=shown.acquisition_id if shown else 0,
                result_code=int(shown.code) if shown else 0, defect_mask=shown.defect_mask if shown else 0,
                top_confidence=shown.top_confidence if shown else 0, model_id=shown.model_id if shown else 0,
                fifo_depth=len(self._fifo), results_lost=(self.counts["fifo_full"] + self.counts["ack_timeouts"]) & 0xFFFF,
                ack_timeouts=self.counts["ack_timeouts"] & 0xFFFF)

    def take_plc(self, plc: PlcBlock, now: float) -> None:
        with self._lock:
            self.plc = plc
            if self.plc_first is None:
                self.plc_first = plc
            if self._fifo and plc.ack_seq == self._fifo[0].seq:
                done = self._fifo.popleft()
                self.counts["delivered"] += 1
                self._bits &= ~(StationBits.ACK_TIMEOUT | StationBits.FIFO_FULL)
                self._event(EventKind.delivered, now, done)
            self._take_triggers(plc, now)
            self._check_plc_alive(plc, now)
            self._expire(now)

    def link_lost(self, now: float) -> None:
        """The transport failed this cycle: results keep waiting (and time out); the PLC is not alive."""
        with self._lock:
            if self.plc_alive:
                self.plc_alive = False
                self._events.append(LineEvent(EventKind.plc_stale, now, detail="link lost"))
            self._plc_seen = None
            self._expire(now)

    def close(self, now: float) -> None:
        """Report every result still waiting as undelivered (nothing is lost silently at shutdown)."""
        with self._lock:
            while self._fifo:
                self._event(EventKind.undelivered, now, self._fifo.popleft(), "link_closed")

    # ---- internals (lock held) ----
    def _event(self, kind: EventKind, now: float, r: PartResult, detail: str = "") -> None:
        self._events.append(LineEvent(kind, now, r.part_id, r.acquisition_id, detail))

    def _expire(self, now: float) -> None:
        while self._fifo and now - self._fifo[0].t_submitted > self.ack_timeout_s:
            late = self._fifo.popleft()
            self.counts["ack_timeouts"] += 1
            self._bits |= StationBits.ACK_TIMEOUT
            self._event(EventKind.undelivered, now, late, "ack_timeout")

    def _take_triggers(self, plc: PlcBlock, now: float) -> None:
        if self._trigger_count is None:  # first read: the count so far is history, not new triggers
            self._trigger_count = plc.trigger_count
            return
        new = (plc.trigger_count - self._trigger_count) & 0xFFFF
        self._trigger_count = plc.trigger_count
        if not new:
            return
        self.counts["triggers"] += new
        if new > 1:  # IDs of the triggers between two reads are gone: the PLC sees the error bit
            self.counts["triggers_lost"] += new - 1
            self._overrun(now, f"{new - 1} trigger IDs between two reads")
        if len(self._triggers) == self._triggers.maxlen:
            self.counts["triggers_lost"] += 1
            self._overrun(now, f"trigger {self._triggers[0]} never claimed by a captured part")
        self._triggers.append(plc.trigger_acq_id)
        self._trigger_came.notify_all()

    def _overrun(self, now: float, detail: str) -> None:
        self.counts["trigger_overruns"] += 1
        self._bits |= StationBits.TRIGGER_OVERRUN
        self._events.append(LineEvent(EventKind.trigger_overrun, now, detail=detail))

    def _check_plc_alive(self, plc: PlcBlock, now: float) -> None:
        if self._plc_seen is None or self._plc_seen[0] != plc.plc_heartbeat:
            self._plc_seen = (plc.plc_heartbeat, now)
            if not self.plc_alive:
                self.plc_alive = True
                self._events.append(LineEvent(EventKind.plc_back, now))
        elif self.plc_alive and now - self._plc_seen[1] > self.plc_timeout_s:
            self.plc_alive = False
            self._events.append(LineEvent(EventKind.plc_stale, now, detail=f"PLC heartbeat still for "
                                                                           f"{now - self._plc_seen[1]:.2f} s"))

    @property
    def plc_bits(self) -> PlcBits:
        return PlcBits(self.plc.plc_status & 0xF)
