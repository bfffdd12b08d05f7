"""The station. `Inspector.step(frame) -> Verdict` is pure (preprocess, infer, decode, decide: no
I/O, no clocks but the one injected); `Station.run()` owns the threads, queues and shutdown:

    capture thread --frames (bounded, drop oldest)--> inference thread --verdicts--> archive worker
         |  arm reject (fail-safe)                        |  resolve reject (cancel on OK in time)
         +-------------------> timing thread: fire the ejector at each due time
"""

from __future__ import annotations

import collections
import logging
import threading
from dataclasses import dataclass, field
from typing import Callable

from .archive import Archive
from .backends import Backend
from .bundle import Bundle
from .clock import Clock
from .decision import Decision
from .errors import ActuatorError, DefectgateError
from .postprocess import decode
from .preprocess import Preprocessor
from .scheduler import RejectScheduler
from .sources import Source
from .types import Frame, Outcome, Verdict

log = logging.getLogger(__name__)


class Inspector:
    """Frame in, Verdict out, for one model. Swapping models means building a new Inspector."""

    def __init__(self, bundle: Bundle, backend: Backend, decision: Decision, clock: Clock):
        self.bundle, self.backend, self.decision, self.clock = bundle, backend, decision, clock
        side = bundle.sidecar
        self.preprocess = Preprocessor(side.input)
        self.num_classes = len(side.classes)
        # decode at the lowest threshold any class uses; the decision rules apply the per-class ones
        self.floor = float(min([side.conf_threshold, *side.class_thresholds.values()]))
        if decision.rules and hasattr(decision.rules[0], "thresholds"):
            self.floor = min(self.floor, float(decision.rules[0].thresholds.min()))
        self.version = bundle.version

    def step(self, frame: Frame) -> Verdict:
        side = self.bundle.sidecar
        batch, info = self.preprocess(frame.image)
        outputs = self.backend.infer(batch)
        dets = decode(outputs[0], side.output, self.num_classes, info, self.floor, side.iou_threshold, side.output.max_det)
        outcome, reasons, kept = self.decision(dets, frame.image.shape[:2])
        return Verdict(
            part_id=frame.part_id if frame.part_id is not None else frame.seq, outcome=outcome, reasons=reasons,
            detections=kept, t_capture=frame.t_capture, t_decided=self.clock.now(), encoder_mm=frame.encoder_mm,
            frame_seq=frame.seq, model_version=self.version,
            truth_ng=None if frame.truth is None else bool(frame.truth.get("ng")),
        )

    def failsafe(self, frame: Frame, reason: str) -> Verdict:
        """The verdict for a part that could not be judged: NG, so that it is rejected."""
        return Verdict(
            part_id=frame.part_id if frame.part_id is not None else frame.seq, outcome=Outcome.NG, reasons=[reason],
            t_capture=frame.t_capture, t_decided=self.clock.now(), encoder_mm=frame.encoder_mm, frame_seq=frame.seq,
            model_version=self.version, failsafe=True,
            truth_ng=None if frame.truth is None else bool(frame.truth.get("ng")),
        )


@dataclass
class RunStats:
    """What happened on the line, for the report. Truth is kept only for reporting."""

    captured: dict[int, bool | None] = field(default_factory=dict)  # part -> truth NG
    verdicts: list[Verdict] = field(default_factory=list)
    fired: dict[int, float] = field(default_factory=dict)  # part -> fire time
    fire_errors_ms: list[float] = field(default_factory=list)  # actual - due
    actuator_failures: int = 0
    frames_dropped: int = 0
    inference_failures: int = 0
    late_decisions: int = 0
    t_start: float = 0.0
    t_end: float = 0.0


class Station:
    def __init__(self, inspector: Inspector, source: Source, scheduler: RejectScheduler, actuator,
                 archive: Archive | None, clock: Clock, queue_size: int = 4, watchdog_s: float = 2.0,
                 max_parts: int | None = None, on_verdict: Callable[[Verdict], None] | None = None):
        self.inspector, self.source, self.scheduler = inspector, source, scheduler
        self.actuator, self.archive, self.clock = actuator, archive, clock
        self.max_parts, self.watchdog_s, self.on_verdict = max_parts, watchdog_s, on_verdict
        self.stats = RunStats()
        self.stop = threading.Event()
        self._frames: collections.deque[Frame] = collections.deque(maxlen=queue_size)
        self._frame_ready = threading.Condition()
        self._capture_done = threading.Event()
        self._lock = threading.Lock()

    # ---- threads ----
    def _capture(self) -> None:
        read_timeout = 0.2
        try:
            while not self.stop.is_set():
                if self.max_parts is not None and len(self.stats.captured) >= self.max_parts:
                    break
                frame = self.source.read(read_timeout)
                if frame is None:
                    if self.source.exhausted:
                        break
                    continue
                part = frame.part_id if frame.part_id is not None else frame.seq
                with self._lock:
                    self.stats.captured[part] = None if frame.truth is None else bool(frame.truth.get("ng"))
                self.scheduler.arm(part, frame.t_capture)
                with self._frame_ready:
                    if len(self._frames) == self._frames.maxlen:
                        self.stats.frames_dropped += 1  # the dropped part stays armed: it will be rejected
                    self._frames.append(frame)
                    self._frame_ready.notify()
        except DefectgateError as exc:
            log.error("capture stopped: %s", exc)
        finally:
            self._capture_done.set()
            with self._frame_ready:
                self._frame_ready.notify_all()

    def _infer(self) -> None:
        while True:
            with self._frame_ready:
                while not self._frames and not self._capture_done.is_set():
                    self._frame_ready.wait(0.1)
                if not self._frames:
                    return
                frame = self._frames.popleft()
            try:
                verdict = self.inspector.step(frame)
            except Exception as exc:  # any inference fault: judge the part unjudgeable and keep running
                log.warning("inference failed for part %s: %s", frame.part_id, exc)
                self.stats.inference_failures += 1
                verdict = self.inspector.failsafe(frame, "inference_failed")
            on_time = self.scheduler.resolve(verdict.part_id, verdict.is_ng, self.clock.now())
            if not on_time:
                self.stats.late_decisions += 1
                if not verdict.is_ng:
                    verdict.outcome, verdict.failsafe = Outcome.NG, True
                verdict.reasons.append("deadline_missed")
            with self._lock:
                self.stats.verdicts.append(verdict)
            if self.archive is not None:
                self.archive.submit(verdict, frame.image)
            if self.on_verdict is not None:
                self.on_verdict(verdict)

    def _timing(self) -> None:
        spin = 0.002
        while True:
            due = self.scheduler.next_due()
            now = self.clock.now()
            if due is None:
                if self._capture_done.is_set() and not self._infer_thread.is_alive():
                    return
                self.scheduler.changed.wait(0.05)
                self.scheduler.changed.clear()
                continue
            if due - now > spin:
                self.scheduler.changed.wait(min(due - now - spin, 0.05))
                self.scheduler.changed.clear()
                continue
            self.clock.sleep_until(due)
            for cmd in self.scheduler.pop_due(self.clock.now()):
                t = self.clock.now()
                try:
                    self.actuator.fire(cmd.pulse_s)
                    fired: float | None = t
                    error = None
                except ActuatorError as exc:
                    fired, error = None, str(exc)
                    self.stats.actuator_failures += 1
                    log.error("ejector failed for part %s: %s", cmd.part_id, exc)
                with self._lock:
                    if fired is not None:
                        self.stats.fired[cmd.part_id] = fired
                        self.stats.fire_errors_ms.append((fired - cmd.fire_at) * 1000.0)
                if self.archive is not None:
                    self.archive.record_fire(cmd.part_id, cmd.fire_at, fired, error)

    def run(self) -> RunStats:
        self.stats.t_start = self.clock.now()
        threads = [threading.Thread(target=self._capture, name="capture", daemon=True),
                   threading.Thread(target=self._infer, name="inference", daemon=True)]
        self._infer_thread = threads[1]
        timing = threading.Thread(target=self._timing, name="timing", daemon=True)
        for t in threads:
            t.start()
        timing.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(0.2)
            while timing.is_alive():
                timing.join(0.2)
        except KeyboardInterrupt:
            self.stop.set()
        self.stats.t_end = self.clock.now()
        return self.stats
