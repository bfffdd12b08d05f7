"""The station's side of the line (issue #23): what `pipeline.Station` calls at capture, at each
verdict, at each fired reject and at the end of a run, built from the station config's `line:`
section. The station keeps its own code and gains one-line hooks; everything the line needs is
decided here:

- `plc_tracks`: the station opens no actuator and fires nothing. At capture each part is announced
  to the link (its acquisition ID: the trigger's, see `line.trigger`), at its verdict the result is
  queued for the PLC; the timing thread only lets due parts leave the station's books (the PLC's
  shift register fires). Every result the PLC did not take is an `undelivered` event: the PLC
  rejects that part, and the report counts it as not judged.
- `station_fires` with `line.timing.process`: a `ProcessScheduler` replaces the station's
  scheduler; the station's timing thread pumps it (fired / missed reports come back into the
  station's own bookkeeping) and a dead timing process raises `timing_process_died`.
- any mode with line inputs: each fired reject waits for its confirm sensor; unconfirmed rejects
  are counted per part in the archive (`line_events`) and the report.

The link's events are drained into `LineStats` and the archive's `line_events` table from the
decide thread (per verdict), the timing thread and at the end of the run."""

from __future__ import annotations

import collections
import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable

from ..clock import Clock
from .config import InputKind, LineMode, LineSection, TransportKind, TriggerKind
from .events import EventKind, LineEvent
from .stats import LineStats

log = logging.getLogger(__name__)

OnFired = Callable[[Any, "float | None", "str | None"], None]
OnMissed = Callable[[Any, str], None]


def wants_link(line: LineSection) -> bool:
    return (line.mode is LineMode.plc_tracks or line.result_block.transport is not TransportKind.none
            or line.inputs.kind is not InputKind.none or line.opcua.enabled or line.line_stop.kind.value != "none")


class StationLine:
    def __init__(self, cfg: LineSection, clock: Clock, link: Any = None, scheduler: Any = None, alarm: Any = None,
                 travel_s: float = 0.0):
        self.cfg, self.clock, self.link, self.scheduler, self.alarm = cfg, clock, link, scheduler, alarm
        self.plc_tracks = cfg.mode is LineMode.plc_tracks
        self.travel_s = travel_s  # camera to ejector: how long a captured part is still on the belt
        self.stats = LineStats(mode=cfg.mode.value, timing="process" if scheduler is not None else "thread",
                               trigger=cfg.trigger.value)
        self.archive: Any = None  # set by the builder once the archive exists
        self.station: Any = None  # set by the builder (SelectModel swaps the station's model)
        self._lock = threading.Lock()
        self._was_ok: collections.OrderedDict[int, bool] = collections.OrderedDict()  # until delivered or not
        self._last_capture: float | None = None

    @classmethod
    def build(cls, cfg: Any, clock: Clock, alarm: Any, classes: list[str]) -> "StationLine | None":
        """From a StationConfig; None when the config has no `line:` wiring (today's station)."""
        line = cfg.line
        process = line.mode is LineMode.station_fires and line.timing.process
        if not (wants_link(line) or process):
            return None
        conveyor, act = cfg.conveyor, cfg.actuator
        scheduler = None
        if process:
            from .timing_process import ProcessScheduler

            scheduler = ProcessScheduler(conveyor.belt_speed_mm_s, conveyor.camera_to_ejector_mm, act.pulse_ms / 1000,
                                         act.decision_margin_ms / 1000, act.kind, act.options, clock,
                                         line.timing.heartbeat_ms / 1000, line.timing.dead_after_ms / 1000).start()
        built = cls(line, clock, None, scheduler, alarm, conveyor.camera_to_ejector_mm / conveyor.belt_speed_mm_s)
        if wants_link(line):
            from .facade import LineLink

            try:
                built.link = LineLink.from_config(line, clock, alarm, classes, select_model=built._select_model(cfg),
                                                  name=cfg.station.name).start()
            except BaseException:
                built.close()
                raise
        return built

    @property
    def fires_actuator(self) -> bool:
        """Whether the station opens the actuator itself (not when the PLC or the timing process owns it)."""
        return not self.plc_tracks and self.scheduler is None

    def wrap_source(self, source: Any) -> Any:
        if self.cfg.trigger is TriggerKind.plc:
            from .trigger_source import PlcTriggeredSource

            return PlcTriggeredSource(source, self.link.handshake)
        return source

    # ---- the station's hooks ----
    def captured(self, parts: list[int], frame: Any) -> None:
        """Capture thread: the parts first seen in `frame` (with `line.trigger: plc`, the frame's part
        id is the PLC's acquisition ID)."""
        self._last_capture = frame.t_capture
        if self.link is None:
            return
        acq = frame.part_id if self.cfg.trigger is TriggerKind.plc else None
        for part in parts:
            self.link.part_captured(part, acq, frame.t_capture)

    def verdict(self, verdict: Any) -> None:
        """Decide thread, after the part's archive row was queued."""
        if self.link is None:
            return
        with self._lock:
            self._was_ok[verdict.part_id] = not verdict.is_ng
            if len(self._was_ok) > 10_000:
                self._was_ok.popitem(last=False)
        self.link.verdict_ready(verdict)
        if verdict.is_ng:
            self._rejected(verdict.part_id, verdict.t_decided)
        self.drain()

    def _rejected(self, part_id: int, t: float) -> None:
        """plc_tracks: the PLC will reject this part (an NG result, or none it could use); the station's
        books (RunStats.fired: the report's rejected / escapes / overkills) say so, as they would for a
        pulse the station fired itself."""
        stats = self.station.stats if self.plc_tracks and self.station is not None else None
        if stats is not None and part_id in stats.captured:
            stats.fired.setdefault(part_id, t)

    def fired(self, part_id: int, t: float) -> None:
        """Timing thread: a reject went out; its confirm sensor is now expected."""
        if self.link is not None:
            self.link.reject_fired(part_id, t)

    def starting(self, scheduler: Any, done: threading.Event, on_fired: OnFired,
                 on_missed: OnMissed) -> Callable[[], None] | None:
        """The run starts (the station's threads are about to): the link may tell the PLC it is Ready.
        Returns what the station's timing thread runs instead of its own loop, or None for its own."""
        if self.link is not None:
            self.link.run_started()
        if self.scheduler is not None:
            return lambda: self.scheduler.pump(on_fired, on_missed, until=done.is_set, on_died=self._timing_died)
        if self.plc_tracks:
            return lambda: self._plc_owns_the_ejector(scheduler, done)
        return None

    def _plc_owns_the_ejector(self, scheduler: Any, done: threading.Event) -> None:
        # parts stay armed at capture so that a late verdict still counts as late (and NG-failsafe);
        # at their fire time they leave the books unfired: the PLC's shift register rejects them
        while not done.is_set():
            scheduler.pop_due(self.clock.now())
            self.drain()
            self._plc_counters()  # live for telemetry
            scheduler.changed.wait(0.05)
            scheduler.changed.clear()

    def _timing_died(self, why: str) -> None:
        if self.alarm is not None:
            self.alarm.raise_("timing_process_died", why)
        self._record([LineEvent(EventKind.timing_died, self.clock.now(), detail=why)])

    # ---- events ----
    def drain(self) -> None:
        events = self.link.events() if self.link is not None else []
        self._record(events)

    def _record(self, events: list[LineEvent]) -> None:
        with self._lock:
            self.stats.take(events, self._was_ok)
            for ev in events:
                if ev.kind is EventKind.undelivered and self._was_ok.get(ev.part_id):  # type: ignore[arg-type]
                    self._rejected(ev.part_id, ev.t)  # type: ignore[arg-type]
                if ev.kind in (EventKind.delivered, EventKind.undelivered):
                    self._was_ok.pop(ev.part_id, None)  # type: ignore[arg-type]
            if self.scheduler is not None:
                self.stats.timing_restarts = self.scheduler.restarts
                self.stats.pulses_unguaranteed = self.scheduler.unguaranteed
        if self.archive is not None:
            for ev in events:
                self.archive.record_line_event(ev.part_id, ev.acquisition_id, ev.kind.value, ev.detail, ev.t)

    def finish(self) -> None:
        """End of the run (the station's threads are done): let the parts still on the belt reach the
        PLC's ejector, wait for the last acks and confirm windows, then take the final counts."""
        if self.link is not None:
            if self.plc_tracks and self._last_capture is not None:
                # to the PLC's ejector, and its confirm window (the PLC confirms its own rejects)
                wait = self._last_capture + self.travel_s + self.cfg.confirm.window_max_ms / 1000 + 0.05 \
                    - self.clock.now()
                time.sleep(min(max(0.0, wait), 5.0))  # bounded: a stopped belt must not hold the report
            if not self.link.flush(self._flush_timeout_s()):
                log.warning("line: results or confirmations still waiting at the end of the run")
            self._plc_counters()
        self.drain()
        if self.plc_tracks and self.station is not None:  # captured, never judged: no result, the PLC rejects it
            stats = self.station.stats
            for part in [p for p in stats.captured if p not in stats.judged]:
                self._rejected(part, self.clock.now())

    def _flush_timeout_s(self) -> float:
        """How long the link's flush may need: an ack timeout, or a confirm window, plus a few cycles."""
        rb, c, link = self.cfg.result_block, self.cfg.confirm, self.link
        need = rb.ack_timeout_ms + 3 * rb.cycle_ms if link.handshake is not None else 0.0
        if link.confirm is not None:
            need = max(need, c.window_max_ms + 3 * self.cfg.inputs.poll_ms)
        return need / 1000 + 0.05

    def _plc_counters(self) -> None:
        snap = self.link.snapshot()
        with self._lock:
            self.stats.link_up = snap.link_up
            self.stats.triggers_lost = snap.counts.get("results_triggers_lost", 0)
            # the PLC's counters are current only while the link is up (else the report says n/a)
            self.stats.plc = dict(snap.plc_run) if snap.link_up else {}

    def close(self) -> None:
        """After the run: the link reports what still waited as undelivered (into the archive, which is
        closed after this), the timing process stops."""
        if self.link is not None:
            self.link.close()
            self.drain()
        if self.scheduler is not None:
            self.scheduler.close()

    # ---- OPC UA SelectModel ----
    def _select_model(self, cfg: Any) -> Callable[[str], str]:
        def select(version: str) -> str:
            from ..bundle import load_bundle
            from ..errors import ConfigError
            from ..station import build_inspector

            registry = Path(cfg.model.bundle)
            folder = registry / version
            if not (registry / "current").exists() or not (folder / "model.json").is_file():
                raise ConfigError(f"SelectModel {version!r}: model.bundle {registry} is not a registry holding it")
            if self.station is None:
                raise ConfigError("SelectModel: the station is not running")
            self.station.swap_inspector(build_inspector(cfg, self.clock, load_bundle(folder)))
            return version

        return select
