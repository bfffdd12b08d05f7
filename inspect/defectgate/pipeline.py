"""The station. `Inspector.step(frame) -> Verdict` is pure (preprocess, infer, decode, decide: no
I/O, no clocks but the one injected); `Station.run()` owns the threads, queues and shutdown:

    capture ──frames (bounded: drop oldest, or block for replay)──> inference ──(bounded)──> decide
      │ assign parts (parts.py), arm reject (fail-safe),                   │ judge, verdict per part,
      │ letterbox into a pooled buffer (overlaps the previous inference)  │ resolve reject, archive
      └──────────────> timing thread: fire the ejector at each due time <─┘
                       watchdog thread: alarm when a stage stalls or the camera is lost

Each stage has its own thread so that pre- and post-processing run while the engine computes the
next frame: the pipelined frame rate approaches 1 / raw inference time. An engine with several streams
(`concurrency`, OpenVINO `model.streams`) gets one inference thread per stream; decide still sees the
frames in capture order. Each frame carries the
Inspector that prepared it, so a model hot swap between frames never mixes two models in one
frame, every frame (hence every part) is judged exactly once, and the swapped-out model is closed
after its last frame (hotswap.ModelSlot). Which part a frame shows is the PartAssigner's job
(parts.py: one frame per part, or tracking); verdicts are made in one place (inspector.make_verdict).
"""

from __future__ import annotations

import collections
import logging
import sys
import threading
from dataclasses import dataclass
from typing import Any, Callable, Generic, TypeVar

import numpy as np

from .archive import Archive
from .clock import Clock
from .errors import DefectgateError
from .firing import GIL_SWITCH_S, TimingLoop
from .hotswap import ModelSlot
from .inspector import Inspector, make_verdict
from .parts import Assignment, Finished, PartAssigner, TriggeredParts
from .preprocess import LetterboxInfo
from .runstats import RunStats  # noqa: F401  (tests and callers import it from here)
from .scheduler import RejectScheduler
from .sources import Source
from .types import Frame

log = logging.getLogger(__name__)

T = TypeVar("T")


class _Handoff(Generic[T]):
    """A bounded queue from one pipeline thread to the next. `put` waits while it is full (until
    `give_up` is set) or, with wait=False, makes room by dropping the oldest item, which it returns.
    `get` returns None once the producer has closed it and it is empty."""

    def __init__(self, maxlen: int, give_up: threading.Event | None = None):
        self._items: collections.deque[T] = collections.deque()
        self._max, self._give_up = maxlen, give_up
        self._cv = threading.Condition()
        self._closed = False
        self._taken = -1

    def put(self, item: T, wait: bool = True) -> T | None:
        dropped = None
        with self._cv:
            while wait and len(self._items) >= self._max and not (self._give_up and self._give_up.is_set()):
                self._cv.wait(0.1)
            if len(self._items) >= self._max:
                dropped = self._items.popleft()
            self._items.append(item)
            self._cv.notify_all()
        return dropped

    def get(self) -> T | None:
        taken = self.get_numbered()
        return None if taken is None else taken[1]

    def get_numbered(self) -> tuple[int, T] | None:
        """`get`, with the item's place in the order items were taken (0, 1, ...)."""
        with self._cv:
            while not self._items and not self._closed:
                self._cv.wait(0.1)
            if not self._items:
                return None
            item = self._items.popleft()
            self._taken += 1
            self._cv.notify_all()  # a producer waiting for room may go on
            return self._taken, item

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()


class _InOrder(Generic[T]):
    """Hands items numbered by `_Handoff.get_numbered` on to `sink` in that order, whichever of several
    inference threads finishes first. `put` waits while `limit` later items are held for an earlier one."""

    def __init__(self, sink: _Handoff[T], producers: int, limit: int = 8):
        self._sink, self._producers, self._limit = sink, producers, limit
        self._next, self._held = 0, {}  # type: ignore[var-annotated]
        self._cv = threading.Condition()

    def put(self, number: int, item: T) -> None:
        with self._cv:
            while number > self._next and len(self._held) >= self._limit:
                self._cv.wait(0.1)
            self._held[number] = item
            while self._next in self._held:  # the sink's own bound holds them all back when decide lags
                self._sink.put(self._held.pop(self._next))
                self._next += 1
            self._cv.notify_all()

    def producer_done(self) -> None:
        with self._cv:
            self._producers -= 1
            if self._producers == 0:
                self._sink.close()


@dataclass
class _Work:
    frame: Frame
    inspector: Inspector
    assignment: Assignment
    batch: np.ndarray | None = None
    info: LetterboxInfo | None = None
    outputs: list[np.ndarray] | None = None
    error: str | None = None
    t_prepared: float = 0.0
    t_inferred: float = 0.0


class Station:
    def __init__(self, inspector: Inspector, source: Source, scheduler: RejectScheduler, actuator,
                 archive: Archive | None, clock: Clock, queue_size: int = 4, watchdog_s: float = 2.0,
                 max_parts: int | None = None, on_verdict: Callable[[Any], None] | None = None,
                 overflow: str = "drop_oldest", parts: PartAssigner | None = None,
                 alarm: Any = None, telemetry: Any = None, capture_stall_s: float | None = None,
                 shadow: Any = None, line: Any = None):
        self.models = ModelSlot(inspector)
        self.source, self.scheduler = source, scheduler
        self.parts: PartAssigner = parts if parts is not None else TriggeredParts(scheduler)
        self.actuator, self.archive, self.clock = actuator, archive, clock
        self.max_parts, self.watchdog_s, self.on_verdict = max_parts, watchdog_s, on_verdict
        self.block = str(getattr(overflow, "value", overflow)) == "block"
        self.alarm, self.telemetry, self.capture_stall_s = alarm, telemetry, capture_stall_s
        self.shadow = shadow  # shadow.Shadow: a candidate judging the same frames, never actuating
        self.stats = RunStats()
        self.line = line  # line/station_link.StationLine (issue #23): hooks at capture, verdict, fire, end
        self.stats.line = line.stats if line is not None else None
        self.stop = threading.Event()
        self._frames: _Handoff[_Work] = _Handoff(queue_size, give_up=self.stop)
        self._outputs: _Handoff[_Work] = _Handoff(2)
        self._decide_done = threading.Event()
        self._lock = threading.Lock()  # the stats dicts: written by capture, decide and timing
        self.timing = TimingLoop(scheduler, actuator, clock, self.stats, self._lock, alarm, telemetry, archive, line)
        # watchdog heartbeats (monotonic times; None = idle)
        self.last_frame_t: float | None = None
        self._infer_busy: dict[int, float] = {}  # inference thread -> start of its inference in progress
        self.decide_busy_since: float | None = None

    # ---- model hot swap ----
    @property
    def inspector(self) -> Inspector:
        """The model the next captured frame is judged by."""
        return self.models.current

    def swap_inspector(self, inspector: Inspector) -> None:
        """The next frame captured uses `inspector`; frames already in flight finish on the old one,
        which is closed after the last of them."""
        old = self.models.swap(inspector)
        self.stats.swaps += 1
        log.info("model swapped: %s -> %s", old.version, inspector.version)
        if self.telemetry is not None:
            self.telemetry.model_version(inspector.version)

    # ---- threads ----
    def _capture(self) -> None:
        try:
            while not self.stop.is_set():
                if self.max_parts is not None and len(self.stats.captured) >= self.max_parts:
                    break
                frame = self.source.read(0.2)
                if frame is None:
                    if self.source.exhausted:
                        break
                    continue
                self.last_frame_t = self.clock.now()
                self.stats.frames += 1
                assignment = self.parts.assign(frame)  # arms the reject of every new part first
                with self._lock:
                    for part, truth in assignment.new:
                        self.stats.captured[part] = truth
                if self.line is not None:
                    self.line.captured([part for part, _ in assignment.new], frame)
                if self.shadow is not None:  # returns at once: a busy shadow skips the frame
                    self.shadow.frame(frame, assignment)
                work = _Work(frame, self.models.take(), assignment)
                try:
                    work.batch, work.info = work.inspector.prepare(frame.image)
                except Exception as exc:  # a frame the preprocessor cannot take: judge it unjudgeable
                    work.error = f"preprocess_failed: {exc}"
                work.t_prepared = self.clock.now()
                dropped = self._frames.put(work, wait=self.block)
                if dropped is not None:  # the dropped part stays armed: it will be rejected
                    self.stats.frames_dropped += 1
                    self.models.release(dropped.inspector)
                    if self.telemetry is not None:
                        self.telemetry.frame_dropped()
        except DefectgateError as exc:
            log.error("capture stopped: %s", exc)
            if self.alarm is not None:
                self.alarm.raise_("capture_failed", str(exc))
        finally:
            self._frames.close()

    @property
    def infer_busy_since(self) -> float | None:
        """When the longest-running inference now in progress started (None: the engine is idle)."""
        return min(self._infer_busy.values(), default=None)

    def _infer(self, in_order: _InOrder[_Work]) -> None:
        """One of `inference_threads` threads (the engine's `concurrency`: OpenVINO streams); each takes
        the next prepared frame, and decide gets them back in capture order."""
        me = threading.get_ident()
        try:
            while (taken := self._frames.get_numbered()) is not None:
                number, work = taken
                if work.error is None:
                    self._infer_busy[me] = self.clock.now()
                    try:
                        work.outputs = work.inspector.infer(work.batch)  # type: ignore[arg-type]
                    except Exception as exc:  # any engine fault: the part is unjudgeable, the line goes on
                        work.error = f"inference_failed: {exc}"
                    finally:
                        self._infer_busy.pop(me, None)
                work.t_inferred = self.clock.now()
                in_order.put(number, work)  # waits for the decide thread: an inferred frame is never dropped
        finally:
            in_order.producer_done()

    def _decide(self) -> None:
        try:
            while (work := self._outputs.get()) is not None:
                self.decide_busy_since = self.clock.now()
                try:
                    self._decide_one(work)
                finally:
                    self.decide_busy_since = None
                    self.models.release(work.inspector)
            for done in self.parts.finish(self.inspector):
                self._emit(done)
        finally:
            self._decide_done.set()

    def _decide_one(self, work: _Work) -> None:
        frame, inspector = work.frame, work.inspector
        judgement = None
        if work.error is None:
            try:
                judgement = inspector.judge(frame, work.outputs, work.info)  # type: ignore[arg-type]
            except Exception as exc:
                work.error = f"postprocess_failed: {exc}"
        if judgement is None:
            log.warning("frame %s could not be judged: %s", frame.seq, work.error)
            self.stats.inference_failures += 1
            judgement = inspector.failed(str(work.error).split(":")[0])
        if self.telemetry is not None:
            self.telemetry.stage_times(frame.t_capture, work.t_prepared, work.t_inferred, self.clock.now())
        for done in self.parts.judged(frame, work.assignment, judgement):
            self._emit(done)

    def _emit(self, done: Finished) -> None:
        now = self.clock.now()
        on_time = self.scheduler.resolve(done.part.part_id, done.judgement.is_ng, now)
        verdict = make_verdict(done.part, done.judgement, now, on_time)
        if not on_time:
            self.stats.late_decisions += 1
        with self._lock:
            st = self.stats
            st.verdicts.append(verdict)
            st.judged[verdict.part_id] = None
            st.verdicts_total += 1
            st.verdict_ng_total += verdict.is_ng
            if st.verdicts_total % 1000 == 0:
                st.fold()
        if self.archive is not None:
            self.archive.submit(verdict, done.image)
        if self.line is not None:
            self.line.verdict(verdict)
        if self.shadow is not None:
            self.shadow.part_done(verdict)
        if self.telemetry is not None:
            self.telemetry.verdict(verdict, late=not on_time)
        if self.on_verdict is not None:
            self.on_verdict(verdict)

    def run(self) -> RunStats:
        from .watchdog import Watchdog

        self.stats.t_start = t0 = self.clock.now()
        self.parts.start(t0)
        engines = max(1, int(getattr(self.inspector.backend, "concurrency", 1)))
        in_order: _InOrder[_Work] = _InOrder(self._outputs, engines)
        threads = [threading.Thread(target=self._capture, name="capture", daemon=True),
                   *(threading.Thread(target=self._infer, args=(in_order,), name=f"inference-{k}", daemon=True)
                     for k in range(engines)),
                   threading.Thread(target=self._decide, name="decide", daemon=True),
                   threading.Thread(target=self.timing.target(self._decide_done), name="timing", daemon=True)]
        watchdog = Watchdog(self, self.alarm, self.watchdog_s, self.capture_stall_s)
        # A thread waiting for the GIL waits up to the switch interval (5 ms by default): far too
        # long for a reject pulse. 0.5 ms bounds the timing thread's wait at a small cost elsewhere.
        switch = sys.getswitchinterval()
        sys.setswitchinterval(min(switch, GIL_SWITCH_S))
        if self.shadow is not None:
            self.shadow.start()
        for t in threads:
            t.start()
        watchdog.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(0.2)
        except KeyboardInterrupt:
            self.stop.set()
            for t in threads:
                t.join(5.0)
        watchdog.stop()
        if self.shadow is not None:  # the candidate finishes what it was given, then releases its engine
            self.shadow.close()
            self.stats.shadow = self.shadow.stats.to_dict()
        sys.setswitchinterval(switch)
        self.stats.missed_fires = max(self.stats.missed_fires, self.scheduler.missed_fires)
        self.stats.unassigned_defects = self.parts.unassigned_defects
        self.stats.t_end = self.clock.now()
        if self.line is not None:
            self.line.finish()  # the last acks, confirm windows and PLC counts (after t_end: not in the fps)
        return self.stats
