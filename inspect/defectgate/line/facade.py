"""`LineLink`: the few calls the station makes to the line, built from the `line:` config.

    link = LineLink.from_config(cfg.line, clock, alarm, classes, select_model=...).start()
    acq = link.part_captured(part_id, acquisition_id=None, t=frame.t_capture)   # capture thread
    link.verdict_ready(verdict)                                                  # decide thread
    link.reject_fired(part_id, t_fired)                                          # timing thread
    for ev in link.events(): ...   # per-part outcomes for the archive and the report
    link.snapshot()                # health and counters (report, telemetry)
    link.flush(timeout_s)          # end of a run: wait until every result is acked or timed out
    link.close()                   # reports every result still waiting as undelivered

Every call returns at once: the PLC is only ever talked to from the link's own service thread,
inputs are polled by their own thread, the OPC UA server runs its own event loop. A dead PLC
therefore never blocks the line; each result it could not take ends as an `undelivered` event
(the PLC program rejects that part, fail-safe), counted and alarmed."""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from ..clock import Clock
from ..types import Verdict
from .block import StationBits, StationState
from .config import InputKind, LineSection, TransportKind
from .confirm import ConfirmMonitor
from .events import EventKind, LineEvent
from .handshake import U32, Handshake, result_from_verdict
from .inputs import InputReader, open_inputs
from .transport import BlockTransport, LinkError
from .worker import LinkWorker

log = logging.getLogger(__name__)

ACQ_MEMORY = 10_000  # parts between capture and verdict the link remembers the acquisition ID of
PLC_RUN_COUNTERS = ("ejected", "ejected_failsafe", "confirmed", "unconfirmed")  # 16-bit, wrapping

# event -> (alarm condition, raise?) ; the alarm clears on the paired event
ALARMS = {
    (EventKind.undelivered, "ack_timeout"): ("result_ack_timeout", True),
    (EventKind.undelivered, "fifo_full"): ("result_fifo_full", True),
    (EventKind.delivered, ""): ("result_ack_timeout", False),
    (EventKind.plc_stale, ""): ("plc_stale", True),
    (EventKind.plc_back, ""): ("plc_stale", False),
    (EventKind.trigger_overrun, ""): ("trigger_overrun", True),
    (EventKind.reject_unconfirmed, ""): ("reject_unconfirmed", True),
    (EventKind.reject_confirmed, ""): ("reject_unconfirmed", False),
    (EventKind.line_stop, ""): ("line_stop", True),
}


@dataclass
class LineHealth:
    link_up: bool | None  # None: no result block configured
    plc_alive: bool | None
    state: str
    fifo_depth: int
    counts: dict[str, int] = field(default_factory=dict)
    inputs: dict[str, bool] = field(default_factory=dict)
    plc: dict[str, int] = field(default_factory=dict)  # the PLC's own counters from the block
    line_stop: bool = False
    plc_run: dict[str, int] = field(default_factory=dict)  # those counters since the link's first read


def open_transport(cfg: LineSection) -> BlockTransport | None:
    rb = cfg.result_block
    if rb.transport is TransportKind.modbus:
        from .modbus_link import ModbusClientTransport

        m = rb.modbus
        return ModbusClientTransport(m.host, m.port, m.base, m.unit, m.timeout_ms / 1000, rb.reconnect_ms / 1000)
    if rb.transport is TransportKind.modbus_server:
        from .modbus_link import ModbusServerTransport

        return ModbusServerTransport(rb.modbus_server.host, rb.modbus_server.port, rb.modbus_server.base)
    if rb.transport is TransportKind.s7:
        from .s7_link import S7Transport

        s = rb.s7
        return S7Transport(s.host, s.db, s.start, s.rack, s.slot, s.port, rb.reconnect_ms / 1000)
    return None


class LineLink:
    def __init__(self, cfg: LineSection, clock: Clock, alarm: Any = None, classes: Sequence[str] = (),
                 transport: BlockTransport | None = None, inputs: InputReader | None = None,
                 line_stop_output: Any = None, opcua: Any = None):
        self.cfg, self.clock, self.alarm, self.classes = cfg, clock, alarm, list(classes)
        rb = cfg.result_block
        self.handshake = self.worker = None
        if transport is not None:
            self.handshake = Handshake(clock, rb.fifo_size, rb.ack_timeout_ms / 1000, rb.heartbeat_ms / 1000,
                                       rb.plc_timeout_ms / 1000)
            self.worker = LinkWorker(self.handshake, transport, clock, rb.cycle_ms / 1000)
        self.transport, self.inputs, self.line_stop_output, self.opcua = transport, inputs, line_stop_output, opcua
        c = cfg.confirm
        self.confirm = ConfirmMonitor(c.window_min_ms / 1000, c.window_max_ms / 1000, c.stop_after) \
            if inputs is not None else None
        self._events: collections.deque[LineEvent] = collections.deque(maxlen=100_000)
        # part id -> acquisition id, until its verdict; bounded: a part whose frame was dropped never
        # gets one (the PLC rejects it for lack of a result), and its entry must not stay forever
        self._acq: collections.OrderedDict[int, int] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._running = threading.Event()  # run_started(): the station takes parts
        self._threads: list[threading.Thread] = []
        self.counts = collections.Counter()
        self._ticks = itertools.count()
        self.state = StationState.INITIALIZED

    @classmethod
    def from_config(cls, cfg: LineSection, clock: Clock, alarm: Any = None, classes: Sequence[str] = (),
                    select_model: Callable[[str], str] | None = None, on_start: Callable[[], None] | None = None,
                    on_stop: Callable[[], None] | None = None, name: str = "station-1") -> "LineLink":
        transport = open_transport(cfg)
        inputs = None
        if cfg.inputs.kind is not InputKind.none:
            inputs = open_inputs(cfg.inputs.kind, cfg.inputs.map, cfg.inputs.options)
        line_stop = None
        if cfg.line_stop.kind.value != "none":
            from ..actuators.alarm import open_alarm

            line_stop = open_alarm(cfg.line_stop.kind, cfg.line_stop.options, clock).output
        opcua = None
        if cfg.opcua.enabled:
            from .opcua import OpcUaVisionServer

            users = str(cfg.opcua.users_file) if cfg.opcua.users_file else None
            opcua = OpcUaVisionServer(cfg.opcua.host, cfg.opcua.port, users, select_model, on_start, on_stop, name)
        return cls(cfg, clock, alarm, classes, transport, inputs, line_stop, opcua)

    # ---- lifecycle ----
    def start(self) -> "LineLink":
        if self.opcua is not None:
            self.opcua.start()
            self.opcua.set_state(StationState.INITIALIZED)
        self._spawn(self._service, "line-service")
        if self.inputs is not None:
            self._spawn(self._poll_inputs, "line-inputs")
        return self

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        th = threading.Thread(target=target, name=name, daemon=True)
        th.start()
        self._threads.append(th)

    def close(self) -> None:
        self._stop.set()
        for th in self._threads:
            th.join(5.0)
        if self.handshake is not None:
            self.handshake.close(self.clock.now())
            self._take(self.handshake.events())
        if self.confirm is not None:  # a run that ended without flush(): its open confirm windows
            self._take(self.confirm.abandon(self.clock.now()))
        for obj in (self.transport, self.inputs, self.line_stop_output, self.opcua):
            if obj is not None:
                try:
                    obj.close()
                except (LinkError, OSError, RuntimeError) as exc:  # shutting down: report, close the rest
                    log.warning("closing %s: %s", type(obj).__name__, exc)

    # ---- the station's calls (never block) ----
    def run_started(self) -> None:
        """The station's threads run: the link may now say Ready, which a PLC may use as the line's
        start interlock (ST `VisionReady`); before, a part triggered would find no one to take it."""
        self._running.set()
        if self.worker is None:
            self._set_state(StationState.READY)

    def part_captured(self, part_id: int, acquisition_id: int | None = None, t: float | None = None) -> int:
        """The acquisition ID the part's result will carry: the one given (a trigger that carries
        it), else the oldest unclaimed trigger ID read from the PLC, else the part id."""
        if acquisition_id is None and self.handshake is not None:
            acquisition_id = self.handshake.take_trigger()
        acq = (part_id if acquisition_id is None else acquisition_id) & U32
        with self._lock:
            self._acq[part_id] = acq
            if len(self._acq) > ACQ_MEMORY:
                self._acq.popitem(last=False)
            self.counts["parts_captured"] += 1
        return acq

    def verdict_ready(self, verdict: Verdict) -> None:
        with self._lock:
            acq = self._acq.pop(verdict.part_id, verdict.part_id & U32)
            self.counts["verdicts"] += 1
            self.counts["failsafe" if verdict.failsafe else "ng" if verdict.is_ng else "ok"] += 1
        result = result_from_verdict(verdict, acq)
        if self.handshake is not None:
            self.handshake.submit(result)  # a full FIFO ends as an undelivered event, never silently
        self._set_state(StationState.EXECUTING if self._healthy() else StationState.ERROR)
        if self.opcua is not None:
            from .opcua import ResultInfo

            names = sorted({self.classes[c] if 0 <= c < len(self.classes) else str(c)
                            for c in verdict.detections.class_id.tolist()})
            self.opcua.publish(ResultInfo(f"{verdict.part_id}-{acq}", verdict.part_id, acq, result.code, names,
                                          verdict.model_version, result.top_confidence / 10000))

    def reject_fired(self, part_id: int, t: float) -> None:
        with self._lock:
            self.counts["rejects_fired"] += 1
        if self.confirm is not None and self.cfg.confirm.enabled:
            self.confirm.expect(part_id, t)

    def flush(self, timeout_s: float) -> bool:
        """End of a run: wait at most `timeout_s` until no result waits for an ack and no fired reject
        for its confirm sensor (each ends in an event). True when nothing was left waiting."""
        deadline = time.monotonic() + timeout_s
        while True:
            idle = (self.handshake is None or self.handshake.pending == 0) and \
                (self.confirm is None or self.confirm.pending == 0)
            if idle or time.monotonic() >= deadline:
                if self.handshake is not None:  # the last outcomes, before the service thread's next cycle
                    self._take(self.handshake.events())
                if self.confirm is not None:  # the input poller hands its last events over after its read
                    time.sleep(2 * self.cfg.inputs.poll_ms / 1000)
                    self._take(self.confirm.abandon(self.clock.now()))  # what is still open now never passes
                return idle
            time.sleep(0.005)

    def events(self) -> list[LineEvent]:
        with self._lock:
            out = list(self._events)
            self._events.clear()
        return out

    def reset_line_stop(self) -> None:
        if self.confirm is not None:
            self.confirm.reset_line_stop()
        self._line_stop(False)
        if self.alarm is not None:
            self.alarm.clear("line_stop")

    def snapshot(self) -> LineHealth:
        hs, c = self.handshake, self.confirm
        with self._lock:
            counts = dict(self.counts)
        if hs is not None:
            counts.update({f"results_{k}": v for k, v in hs.counts.items()})
        if c is not None:
            counts.update(rejects_confirmed=c.confirmed, rejects_unconfirmed=c.unconfirmed,
                          unconfirmed_in_row=c.in_row, confirm_spurious=c.spurious)
        plc = {} if hs is None else {k: getattr(hs.plc, k) for k in ("ejected", "ejected_failsafe", "confirmed",
                                                                      "unconfirmed", "last_ejected_id")}
        first = hs.plc_first if hs is not None else None
        run = {} if first is None else {k: (getattr(hs.plc, k) - getattr(first, k)) & 0xFFFF for k in PLC_RUN_COUNTERS}
        return LineHealth(self.worker.link_up if self.worker else None, hs.plc_alive if hs else None,
                          self.state.name.capitalize(), hs.pending if hs else 0,
                          counts, c.state if c else {}, plc, bool(c and c.line_stop), run)

    # ---- the link's own threads ----
    def _service(self) -> None:
        period = self.cfg.result_block.cycle_ms / 1000
        while not self._stop.wait(0 if self.worker is not None else period):
            if self.worker is not None:
                if self.alarm is not None:
                    self.handshake.set_flag(StationBits.ALARM, self.alarm.on)
                t0 = self.clock.now()
                self.worker.cycle()
                self._take(self.handshake.events())
                if not self.worker.link_up:  # unreachable at start or lost mid-run
                    self._raise("plc_link_lost", self.worker.last_error)
                elif self.alarm is not None:
                    self.alarm.clear("plc_link_lost")
                if self.state is StationState.INITIALIZED and self.worker.link_up and self._running.is_set():
                    self._set_state(StationState.READY)
                elif self.state is StationState.ERROR and self._healthy():
                    self._set_state(StationState.EXECUTING)
                self._stop.wait(max(0.0, period - (self.clock.now() - t0)))
            if self.opcua is not None and next(self._ticks) % 50 == 0:  # counters at ~2 Hz
                self.opcua.set_counters(opcua_counters(self.snapshot().counts))

    def _poll_inputs(self) -> None:
        period = self.cfg.inputs.poll_ms / 1000
        failing = False
        while not self._stop.wait(period):
            try:
                levels = self.inputs.read()
            except LinkError as exc:
                if not failing:
                    log.error("line inputs: %s", exc)
                    self._raise("line_inputs_lost", str(exc))
                failing = True
                continue
            if failing and self.alarm is not None:
                self.alarm.clear("line_inputs_lost")
            failing = False
            self._take(self.confirm.observe(levels, self.clock.now()))

    def _take(self, events: list[LineEvent]) -> None:
        if not events:
            return
        with self._lock:
            self._events.extend(events)
            for ev in events:
                self.counts[f"{ev.kind.value}:{ev.detail}" if ev.kind is EventKind.undelivered else ev.kind.value] += 1
        for ev in events:
            rule = ALARMS.get((ev.kind, ev.detail if ev.kind is EventKind.undelivered else ""))
            if ev.kind is EventKind.input_changed:
                name, _, level = ev.detail.partition("=")
                rule = (name, level == "1") if name in ("bin_full", "air_low") else None
            if rule is not None:
                cond, on = rule
                if on:
                    self._raise(cond, ev.detail or f"part {ev.part_id}")
                elif self.alarm is not None:
                    self.alarm.clear(cond)
            if ev.kind is EventKind.line_stop:
                self._line_stop(True)

    def _raise(self, cond: str, detail: str) -> None:
        if self.alarm is not None:
            self.alarm.raise_(cond, detail)

    def _line_stop(self, on: bool) -> None:
        if self.handshake is not None:
            self.handshake.set_flag(StationBits.LINE_STOP, on)
        if self.line_stop_output is not None:
            try:
                self.line_stop_output.set(on)
            except (LinkError, OSError) as exc:
                log.error("line-stop output failed: %s", exc)

    def _set_state(self, state: StationState) -> None:
        if state is self.state:
            return
        self.state = state
        if self.handshake is not None:
            self.handshake.state = state
        if self.opcua is not None:
            self.opcua.set_state(state)

    def _healthy(self) -> bool:
        return (self.worker is None or self.worker.link_up) and not (self.confirm and self.confirm.line_stop)


def opcua_counters(snap: dict[str, int]) -> dict[str, int]:
    """The OPC UA Counters object from the link's counts (LineLink.snapshot().counts)."""
    return {"PartsInspected": snap.get("verdicts", 0), "PartsOK": snap.get("ok", 0), "PartsNG": snap.get("ng", 0),
            "PartsFailsafe": snap.get("failsafe", 0),
            "ResultsUndelivered": sum(v for k, v in snap.items() if k.startswith("undelivered:")),
            "RejectsUnconfirmed": snap.get("rejects_unconfirmed", 0)}
