"""The station. `Inspector.step(frame) -> Verdict` is pure (preprocess, infer, decode, decide: no
I/O, no clocks but the one injected); `Station.run()` owns the threads, queues and shutdown:

    capture ──frames (bounded: drop oldest, or block for replay)──> inference ──(bounded)──> decide
      │ locate + track parts (free-run), arm reject (fail-safe),          │ verdict per part, resolve
      │ letterbox into a pooled buffer (overlaps the previous inference)  │ reject, archive, telemetry
      └──────────────> timing thread: fire the ejector at each due time <─┘
                       watchdog thread: alarm when a stage stalls or the camera is lost

Each stage has its own thread so that pre- and post-processing run while the engine computes the
next frame: the pipelined frame rate approaches 1 / raw inference time. Each frame carries the
Inspector that prepared it, so a model hot swap between frames never mixes two models in one
frame, and every frame (hence every part) is judged exactly once.
"""

from __future__ import annotations

import collections
import itertools
import logging
import os
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .archive import Archive
from .backends import Backend
from .bundle import Bundle
from .clock import Clock
from .decision import Decision
from .errors import ActuatorError, DefectgateError
from .postprocess import decode
from .preprocess import LetterboxInfo, Preprocessor
from .scheduler import RejectScheduler
from .sources import Source
from .tracking import PartLocator, Track, Tracker, split_by_part
from .types import Detections, Frame, Outcome, Verdict

log = logging.getLogger(__name__)

GIL_SWITCH_S = 0.0005
TIMING_RT_PRIORITY = 10


def _raise_thread_priority() -> None:
    """Put the calling (timing) thread in the real-time FIFO class so that inference threads do not
    delay a pulse. Needs CAP_SYS_NICE (the systemd unit grants it); without it, log and go on."""
    try:
        os.sched_setscheduler(threading.get_native_id(), os.SCHED_FIFO, os.sched_param(TIMING_RT_PRIORITY))
    except (AttributeError, OSError) as exc:
        log.info("timing thread stays at normal priority (%s); grant CAP_SYS_NICE for tighter pulses", exc)


class Inspector:
    """Frame in, Verdict out, for one model. Swapping models means building a new Inspector."""

    def __init__(self, bundle: Bundle, backend: Backend, decision: Decision, clock: Clock, pool: int = 12):
        self.bundle, self.backend, self.decision, self.clock = bundle, backend, decision, clock
        side = bundle.sidecar
        self.preprocess = Preprocessor(side.input)
        # one buffer per frame that can be in flight between capture and inference (see Station)
        self._pool = [Preprocessor(side.input) for _ in range(pool)]
        self._next = 0
        self.num_classes = len(side.classes)
        # decode at the lowest threshold any class uses; the decision rules apply the per-class ones
        self.floor = decision.confidence_floor
        self.version = bundle.version

    # ---- the three stages (the Station runs them in three threads) ----
    def prepare(self, image: np.ndarray) -> tuple[np.ndarray, LetterboxInfo]:
        pre = self._pool[self._next]
        self._next = (self._next + 1) % len(self._pool)
        return pre(image)

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        return self.backend.infer(batch)

    def finish(self, frame: Frame, outputs: list[np.ndarray], info: LetterboxInfo) -> Verdict:
        side = self.bundle.sidecar
        dets = decode(outputs[0], side.output, self.num_classes, info, self.floor, side.iou_threshold, side.output.max_det)
        outcome, reasons, kept = self.decision(dets, frame.image.shape[:2])
        return Verdict(
            part_id=frame.part_id if frame.part_id is not None else frame.seq, outcome=outcome, reasons=reasons,
            detections=kept, t_capture=frame.t_capture, t_decided=self.clock.now(), encoder_mm=frame.encoder_mm,
            frame_seq=frame.seq, model_version=self.version,
            truth_ng=None if frame.truth is None or "ng" not in frame.truth else bool(frame.truth["ng"]),
        )

    def step(self, frame: Frame) -> Verdict:
        batch, info = self.preprocess(frame.image)
        return self.finish(frame, self.backend.infer(batch), info)

    def failsafe(self, frame: Frame, reason: str) -> Verdict:
        """The verdict for a part that could not be judged: NG, so that it is rejected."""
        return Verdict(
            part_id=frame.part_id if frame.part_id is not None else frame.seq, outcome=Outcome.NG, reasons=[reason],
            t_capture=frame.t_capture, t_decided=self.clock.now(), encoder_mm=frame.encoder_mm, frame_seq=frame.seq,
            model_version=self.version, failsafe=True,
            truth_ng=None if frame.truth is None or "ng" not in frame.truth else bool(frame.truth["ng"]),
        )


HISTORY_PARTS = 50_000  # per-part detail kept for the report; older parts are folded into counters


@dataclass
class RunStats:
    """What happened on the line, for the report. Truth is kept only for reporting. A station runs
    for months: per-part detail is kept for the most recent HISTORY_PARTS parts only, older parts
    are folded into `folded` counters (memory stays flat; see docs/performance.md, soak)."""

    captured: dict[int, bool | None] = field(default_factory=dict)  # part -> truth NG (recent window)
    judged: dict[int, None] = field(default_factory=dict)  # parts with a verdict (recent window, ordered)
    verdicts: collections.deque = field(default_factory=lambda: collections.deque(maxlen=10_000))
    fired: dict[int, float] = field(default_factory=dict)  # part -> fire time (recent window)
    fire_errors_ms: collections.deque = field(default_factory=lambda: collections.deque(maxlen=10_000))
    folded: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("parts", "truth_known", "ng_truth", "rejected", "escapes", "overkills", "unjudged"), 0))
    verdicts_total: int = 0
    verdict_ng_total: int = 0
    frames: int = 0
    actuator_failures: int = 0
    frames_dropped: int = 0
    inference_failures: int = 0
    late_decisions: int = 0
    missed_fires: int = 0
    unassigned_defects: int = 0  # free-run: detections on no located part
    swaps: int = 0
    t_start: float = 0.0
    t_end: float = 0.0

    @property
    def parts_total(self) -> int:
        return self.folded["parts"] + len(self.captured)

    def fold(self, keep: int = HISTORY_PARTS) -> None:
        """Fold the oldest parts beyond `keep` into the counters (they are long fired or passed)."""
        excess = len(self.captured) - keep
        if excess <= 0:
            return
        c = self.folded
        for part in list(itertools.islice(self.captured, excess)):
            truth = self.captured.pop(part)
            fired = self.fired.pop(part, None) is not None
            c["parts"] += 1
            c["rejected"] += fired
            if part not in self.judged:
                c["unjudged"] += 1
            self.judged.pop(part, None)
            if truth is not None:
                c["truth_known"] += 1
                c["ng_truth"] += bool(truth)
                c["escapes"] += bool(truth) and not fired
                c["overkills"] += (not truth) and fired


@dataclass
class _Work:
    frame: Frame
    inspector: Inspector
    batch: np.ndarray | None = None
    info: LetterboxInfo | None = None
    outputs: list[np.ndarray] | None = None
    parts: list[tuple[int, np.ndarray]] | None = None  # free-run: (track id, part box) in this frame
    error: str | None = None
    t_prepared: float = 0.0
    t_inferred: float = 0.0


@dataclass
class _PartState:
    """Free-run: what the frames of one tracked part said so far."""

    track: Track
    judged: int = 0
    failed: int = 0
    kept: list[Detections] = field(default_factory=list)
    best: tuple[int, Frame | None, Detections] = (-1, None, Detections.empty())  # (n kept, frame, dets)
    reasons: list[str] = field(default_factory=list)
    model_version: str = ""


class Station:
    def __init__(self, inspector: Inspector, source: Source, scheduler: RejectScheduler, actuator,
                 archive: Archive | None, clock: Clock, queue_size: int = 4, watchdog_s: float = 2.0,
                 max_parts: int | None = None, on_verdict: Callable[[Verdict], None] | None = None,
                 overflow: str = "drop_oldest", tracker: Tracker | None = None, locator: PartLocator | None = None,
                 alarm: Any = None, telemetry: Any = None, capture_stall_s: float | None = None):
        self.inspector, self.source, self.scheduler = inspector, source, scheduler
        self.actuator, self.archive, self.clock = actuator, archive, clock
        self.max_parts, self.watchdog_s, self.on_verdict = max_parts, watchdog_s, on_verdict
        self.block = str(getattr(overflow, "value", overflow)) == "block"
        self.tracker, self.locator = tracker, locator
        if tracker is not None and locator is None:
            self.locator = PartLocator()
        self.alarm, self.telemetry, self.capture_stall_s = alarm, telemetry, capture_stall_s
        self.stats = RunStats()
        self.stop = threading.Event()
        self._frames: collections.deque[_Work] = collections.deque(maxlen=queue_size)
        self._frame_ready = threading.Condition()
        self._outputs: collections.deque[_Work] = collections.deque()
        self._outputs_max = 2
        self._outputs_cv = threading.Condition()
        self._capture_done = threading.Event()
        self._infer_done = threading.Event()
        self._decide_done = threading.Event()
        self._lock = threading.Lock()
        self._closing: list[Track] = []  # free-run tracks closed by capture, finalized by decide
        self._parts: dict[int, _PartState] = {}
        # watchdog heartbeats (monotonic times; None = idle)
        self.last_frame_t: float | None = None
        self.infer_busy_since: float | None = None
        self.decide_busy_since: float | None = None
        self._t0 = 0.0

    # ---- model hot swap ----
    def swap_inspector(self, inspector: Inspector) -> None:
        """The next frame captured uses `inspector`; frames already in flight finish on the old one."""
        old, self.inspector = self.inspector, inspector
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
                work = _Work(frame, self.inspector)
                if self.tracker is not None:
                    self._track(work)
                else:
                    part = frame.part_id if frame.part_id is not None else frame.seq
                    with self._lock:
                        self.stats.captured[part] = None if frame.truth is None else frame.truth.get("ng")
                    if frame.encoder_mm is not None:
                        self.scheduler.observe_encoder(frame.t_capture, frame.encoder_mm)
                    self.scheduler.arm(part, frame.t_capture, encoder_mm=frame.encoder_mm)
                try:
                    work.batch, work.info = work.inspector.prepare(frame.image)
                except Exception as exc:  # a frame the preprocessor cannot take: judge it unjudgeable
                    work.error = f"preprocess_failed: {exc}"
                work.t_prepared = self.clock.now()
                self._enqueue(work)
        except DefectgateError as exc:
            log.error("capture stopped: %s", exc)
            if self.alarm is not None:
                self.alarm.raise_("capture_failed", str(exc))
        finally:
            if self.tracker is not None:
                with self._lock:
                    self._closing.extend(self.tracker.close_all(1 << 62))
            self._capture_done.set()
            with self._frame_ready:
                self._frame_ready.notify_all()

    def _track(self, work: _Work) -> None:
        frame = work.frame
        travel = frame.encoder_mm
        if travel is None:  # no encoder: belt travel from the configured speed
            travel = (frame.t_capture - self._t0) * self.scheduler.speed
        else:
            self.scheduler.observe_encoder(frame.t_capture, travel)
        assert self.locator is not None and self.tracker is not None
        boxes = self.locator(frame.image)
        truth_parts = frame.truth.get("parts") if frame.truth else None
        update = self.tracker.update(boxes, frame.seq, frame.t_capture, travel, truth_parts)
        enc = frame.encoder_mm
        for track in update.new:
            with self._lock:
                self.stats.captured[track.id] = track.truth_ng
                self._parts[track.id] = _PartState(track)
            self.scheduler.arm(track.id, frame.t_capture, offset_mm=track.centre() + travel, encoder_mm=enc)
        for track in update.refined:
            self.scheduler.retime(track.id, frame.t_capture, offset_mm=track.centre() + travel, encoder_mm=enc)
        work.parts = update.assigned
        if update.closed:
            with self._lock:
                self._closing.extend(update.closed)

    def _enqueue(self, work: _Work) -> None:
        with self._frame_ready:
            if self.block:
                while len(self._frames) == self._frames.maxlen and not self.stop.is_set():
                    self._frame_ready.wait(0.1)
            elif len(self._frames) == self._frames.maxlen:
                self.stats.frames_dropped += 1  # the dropped part stays armed: it will be rejected
                if self.telemetry is not None:
                    self.telemetry.frame_dropped()
            self._frames.append(work)
            self._frame_ready.notify_all()

    def _infer(self) -> None:
        try:
            while True:
                with self._frame_ready:
                    while not self._frames and not self._capture_done.is_set():
                        self._frame_ready.wait(0.1)
                    if not self._frames:
                        return
                    work = self._frames.popleft()
                    self._frame_ready.notify_all()  # a blocked capture may go on
                if work.error is None:
                    self.infer_busy_since = self.clock.now()
                    try:
                        work.outputs = work.inspector.infer(work.batch)  # type: ignore[arg-type]
                    except Exception as exc:  # any engine fault: the part is unjudgeable, the line goes on
                        work.error = f"inference_failed: {exc}"
                    finally:
                        self.infer_busy_since = None
                work.t_inferred = self.clock.now()
                with self._outputs_cv:
                    while len(self._outputs) >= self._outputs_max:
                        self._outputs_cv.wait(0.1)
                    self._outputs.append(work)
                    self._outputs_cv.notify_all()
        finally:
            self._infer_done.set()
            with self._outputs_cv:
                self._outputs_cv.notify_all()

    def _decide(self) -> None:
        try:
            while True:
                with self._outputs_cv:
                    while not self._outputs and not self._infer_done.is_set():
                        self._outputs_cv.wait(0.1)
                    if not self._outputs:
                        break
                    work = self._outputs.popleft()
                    self._outputs_cv.notify_all()
                self.decide_busy_since = self.clock.now()
                try:
                    self._decide_one(work)
                finally:
                    self.decide_busy_since = None
            if self.tracker is not None:
                self._finalize_closed(1 << 62)
        finally:
            self._decide_done.set()

    def _decide_one(self, work: _Work) -> None:
        frame, inspector = work.frame, work.inspector
        if work.error is None:
            try:
                verdict = inspector.finish(frame, work.outputs, work.info)  # type: ignore[arg-type]
            except Exception as exc:
                work.error = f"postprocess_failed: {exc}"
        if work.error is not None:
            log.warning("frame %s could not be judged: %s", frame.seq, work.error)
            self.stats.inference_failures += 1
            verdict = inspector.failsafe(frame, work.error.split(":")[0])
        if self.telemetry is not None:
            self.telemetry.stage_times(frame.t_capture, work.t_prepared, work.t_inferred, self.clock.now())
        if self.tracker is None:
            self._emit(verdict, frame.image)
            return
        # free-run: the frame's detections go to the parts it shows; a part is judged when it is gone
        per_part, unassigned = split_by_part(verdict.detections, work.parts or [])
        self.stats.unassigned_defects += unassigned
        with self._lock:
            for track_id, box in work.parts or []:
                state = self._parts.get(track_id)
                if state is None:
                    continue
                state.model_version = verdict.model_version
                if verdict.failsafe:
                    state.failed += 1
                    state.reasons.extend(r for r in verdict.reasons if r not in state.reasons)
                    continue
                state.judged += 1
                dets = per_part.get(track_id, Detections.empty())
                if len(dets):
                    state.kept.append(dets)
                if len(dets) > state.best[0] or state.best[1] is None:
                    state.best = (len(dets), frame, dets)
        self._finalize_closed(frame.seq)

    def _finalize_closed(self, seq: int) -> None:
        with self._lock:
            ready = [t for t in self._closing if t.close_seq is not None and t.close_seq <= seq]
            self._closing = [t for t in self._closing if t not in ready]
            states = [self._parts.pop(t.id, None) for t in ready]
        for state in states:
            if state is None:
                continue
            track = state.track
            _, best_frame, best_dets = state.best
            base = dict(part_id=track.id, t_capture=track.t_first, t_decided=self.clock.now(),
                        encoder_mm=track.travel_first, model_version=state.model_version or self.inspector.version,
                        truth_ng=track.truth_ng)
            if state.judged == 0:  # every frame of the part was dropped or failed: reject it
                reasons = state.reasons or ["unjudged"]
                verdict = Verdict(outcome=Outcome.NG, reasons=reasons, failsafe=True, frame_seq=track.first_seq, **base)
            else:
                kept = Detections.merge(state.kept)
                reasons = sorted({f"{self.inspector.bundle.classes[c] if 0 <= c < len(self.inspector.bundle.classes) else c}"
                                  for c in kept.class_id.tolist()})
                verdict = Verdict(outcome=Outcome.NG if len(kept) else Outcome.OK, reasons=reasons,
                                  detections=best_dets, frame_seq=best_frame.seq if best_frame else track.first_seq,
                                  **base)
            self._emit(verdict, best_frame.image if best_frame is not None else None)

    def _emit(self, verdict: Verdict, image: np.ndarray | None) -> None:
        on_time = self.scheduler.resolve(verdict.part_id, verdict.is_ng, self.clock.now())
        if not on_time:
            self.stats.late_decisions += 1
            if not verdict.is_ng:
                verdict.outcome, verdict.failsafe = Outcome.NG, True
            verdict.reasons.append("deadline_missed")
        with self._lock:
            st = self.stats
            st.verdicts.append(verdict)
            st.judged[verdict.part_id] = None
            st.verdicts_total += 1
            st.verdict_ng_total += verdict.is_ng
            if st.verdicts_total % 1000 == 0:
                st.fold()
        if self.archive is not None:
            self.archive.submit(verdict, image)
        if self.telemetry is not None:
            self.telemetry.verdict(verdict, late=not on_time)
        if self.on_verdict is not None:
            self.on_verdict(verdict)

    def _timing(self) -> None:
        _raise_thread_priority()
        spin = 0.002
        while True:
            due = self.scheduler.next_due()
            now = self.clock.now()
            if due is None:
                if self._decide_done.is_set():
                    return
                self.scheduler.changed.wait(0.05)
                self.scheduler.changed.clear()
                continue
            if due - now > spin:
                self.scheduler.changed.wait(min(due - now - spin, 0.05))
                self.scheduler.changed.clear()
                continue
            self.clock.sleep_until(due)
            fire, missed = self.scheduler.pop_window(self.clock.now())
            for cmd in fire:
                self._fire(cmd)
            for cmd in missed:  # too late: the pulse would hit the next part; count and alarm
                self.stats.missed_fires += 1
                log.error("fire window missed for part %s", cmd.part_id)
                if self.alarm is not None:
                    self.alarm.raise_("fire_window_missed", f"part {cmd.part_id}")
                if self.archive is not None:
                    self.archive.record_fire(cmd.part_id, cmd.fire_at, None, "fire window missed")

    def _fire(self, cmd) -> None:
        t = self.clock.now()
        try:
            self.actuator.fire(cmd.pulse_s)
            fired: float | None = t
            error = None
        except ActuatorError as exc:
            fired, error = None, str(exc)
            self.stats.actuator_failures += 1
            log.error("ejector failed for part %s: %s", cmd.part_id, exc)
            if self.alarm is not None:
                self.alarm.raise_("ejector_failed", str(exc))
        if fired is not None and self.alarm is not None:
            self.alarm.clear("ejector_failed")
            self.alarm.clear("fire_window_missed")
        with self._lock:
            if fired is not None:
                self.stats.fired[cmd.part_id] = fired
                self.stats.fire_errors_ms.append((fired - cmd.fire_at) * 1000.0)
        if self.telemetry is not None:
            self.telemetry.fired(cmd, fired, error)
        if self.archive is not None:
            self.archive.record_fire(cmd.part_id, cmd.fire_at, fired, error)

    def run(self) -> RunStats:
        from .watchdog import Watchdog

        self.stats.t_start = self._t0 = self.clock.now()
        threads = [threading.Thread(target=self._capture, name="capture", daemon=True),
                   threading.Thread(target=self._infer, name="inference", daemon=True),
                   threading.Thread(target=self._decide, name="decide", daemon=True),
                   threading.Thread(target=self._timing, name="timing", daemon=True)]
        watchdog = Watchdog(self, self.alarm, self.watchdog_s, self.capture_stall_s)
        # A thread waiting for the GIL waits up to the switch interval (5 ms by default): far too
        # long for a reject pulse. 0.5 ms bounds the timing thread's wait at a small cost elsewhere.
        switch = sys.getswitchinterval()
        sys.setswitchinterval(min(switch, GIL_SWITCH_S))
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
        sys.setswitchinterval(switch)
        self.stats.missed_fires = max(self.stats.missed_fires, self.scheduler.missed_fires)
        self.stats.t_end = self.clock.now()
        return self.stats
