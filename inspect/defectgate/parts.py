"""Part assignment: which physical part a frame shows, and when a part has been judged enough for its
verdict. One job, two ways, behind one small interface (`PartAssigner`):

- `TriggeredParts`: a photo-eye or PLC triggers one frame per part; the frame is the part.
- `TrackedParts`: a free-running camera sees each part in several frames; `tracking.Tracker` follows
  the parts, each frame's defects go to the parts they lie on, and a part is judged once it has left
  the view: a defect in any of its frames makes it NG.

Both arm the part's reject at capture (the fail-safe: only an OK verdict in time cancels it, see
scheduler.py). The station calls `start` once, `assign` on the capture thread, `judged` and `finish`
on the decide thread; what they return goes to `inspector.make_verdict`, the one place verdicts are
made.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .inspector import Inspector, Judgement, PartSeen
from .scheduler import RejectScheduler
from .tracking import PartLocator, Track, Tracker, split_by_part
from .types import Detections, Frame


@dataclass
class Assignment:
    """What capture learned about the parts in one frame; handed back with the frame's judgement."""

    new: list[tuple[int, bool | None]]  # parts first seen in this frame, with their truth where known
    shown: list[tuple[int, np.ndarray]] = field(default_factory=list)  # free-run: (part, box) in view


@dataclass
class Finished:
    """A part ready for its verdict: where it was seen, what the model said, the image to archive."""

    part: PartSeen
    judgement: Judgement
    image: np.ndarray | None


class PartAssigner(Protocol):
    unassigned_defects: int  # defects that lay on no part (free-run)

    def start(self, t0: float) -> None:
        """The run begins at monotonic time t0."""

    def assign(self, frame: Frame) -> Assignment:
        """Capture thread: the parts `frame` shows; arms the reject of each part seen for the first time."""

    def judged(self, frame: Frame, assignment: Assignment, judgement: Judgement) -> list[Finished]:
        """Decide thread: one frame's judgement; returns the parts it completes."""

    def finish(self, model: Inspector) -> list[Finished]:
        """Decide thread, after the last frame: every part still open (`model` judges a part no frame reached)."""


class TriggeredParts:
    """One frame per part: the photo-eye's part id (or the frame's sequence number) is the part."""

    unassigned_defects = 0

    def __init__(self, scheduler: RejectScheduler):
        self.scheduler = scheduler

    def start(self, t0: float) -> None:
        pass

    def assign(self, frame: Frame) -> Assignment:
        part = PartSeen.of_frame(frame)
        if frame.encoder_mm is not None:
            self.scheduler.observe_encoder(frame.t_capture, frame.encoder_mm)
        self.scheduler.arm(part.part_id, frame.t_capture, encoder_mm=frame.encoder_mm)
        return Assignment(new=[(part.part_id, part.truth_ng)])

    def judged(self, frame: Frame, assignment: Assignment, judgement: Judgement) -> list[Finished]:
        return [Finished(PartSeen.of_frame(frame), judgement, frame.image)]

    def finish(self, model: Inspector) -> list[Finished]:
        return []


@dataclass
class PartEvidence:
    """What the frames of one part said so far (free-run parts, and the shadow model's view of any part):
    a defect in any judged frame makes the part NG; a part no frame of which could be judged is
    unjudgeable (fail-safe NG)."""

    judged: int = 0
    defects: set[str] = field(default_factory=set)
    failure: list[str] = field(default_factory=list)
    best: tuple[int, Frame | None, Detections] = (-1, None, Detections.empty())  # (n defects, frame, dets)
    model: Inspector | None = None  # the model that judged its latest frame

    def add(self, frame: Frame, judgement: Judgement, dets: Detections) -> None:
        """One frame's judgement; `dets` are its rule-kept defects that lie on this part."""
        self.model = judgement.model
        if judgement.failure:
            self.failure.extend(r for r in judgement.failure if r not in self.failure)
            return
        self.judged += 1
        if len(dets):
            self.defects.update(judgement.model.reasons(dets))
        if len(dets) > self.best[0] or self.best[1] is None:
            self.best = (len(dets), frame, dets)

    def conclude(self, fallback: Inspector) -> tuple[Judgement, Frame | None]:
        """The part's judgement from all its frames, and the frame to show for it (None: no frame judged)."""
        model = self.model or fallback
        if self.judged == 0:
            return Judgement(model, [], Detections.empty(), self.failure or ["unjudged"]), None
        _, best_frame, best_dets = self.best
        return Judgement(model, sorted(self.defects), best_dets, []), best_frame


@dataclass
class _Evidence(PartEvidence):
    """Free-run: a tracked part's evidence and its track."""

    track: Track | None = None


class TrackedParts:
    """Free-run: parts found by `locator` and followed by `tracker` in belt coordinates. The reject is
    armed when a part first shows and re-timed once it is seen whole (a better centre); each frame's
    defects go to the part whose box holds them; the part's verdict comes when its track closes."""

    def __init__(self, tracker: Tracker, locator: PartLocator, scheduler: RejectScheduler):
        self.tracker, self.locator, self.scheduler = tracker, locator, scheduler
        self.unassigned_defects = 0
        self._t0 = 0.0
        self._lock = threading.Lock()  # _parts and _closing: written by capture, read by decide
        self._parts: dict[int, _Evidence] = {}
        self._closing: list[Track] = []  # closed by capture, finalized by decide once judged

    def start(self, t0: float) -> None:
        self._t0 = t0

    def assign(self, frame: Frame) -> Assignment:
        travel = frame.encoder_mm
        if travel is None:  # no encoder: belt travel from the configured speed
            travel = (frame.t_capture - self._t0) * self.scheduler.speed
        else:
            self.scheduler.observe_encoder(frame.t_capture, travel)
        truth_parts = frame.truth.get("parts") if frame.truth else None
        update = self.tracker.update(self.locator(frame.image), frame.seq, frame.t_capture, travel, truth_parts)
        enc = frame.encoder_mm
        for track in update.new:
            with self._lock:
                self._parts[track.id] = _Evidence(track=track)
            self.scheduler.arm(track.id, frame.t_capture, offset_mm=track.centre() + travel, encoder_mm=enc)
        for track in update.refined:
            self.scheduler.retime(track.id, frame.t_capture, offset_mm=track.centre() + travel, encoder_mm=enc)
        if update.closed:
            with self._lock:
                self._closing.extend(update.closed)
        return Assignment(new=[(t.id, t.truth_ng) for t in update.new], shown=update.assigned)

    def judged(self, frame: Frame, assignment: Assignment, judgement: Judgement) -> list[Finished]:
        per_part, unassigned = split_by_part(judgement.detections, assignment.shown)
        self.unassigned_defects += unassigned
        with self._lock:
            for track_id, _box in assignment.shown:
                evidence = self._parts.get(track_id)
                if evidence is not None:
                    evidence.add(frame, judgement, per_part.get(track_id, Detections.empty()))
        return self._finalize(frame.seq, judgement.model)

    def finish(self, model: Inspector) -> list[Finished]:
        # capture has ended (the decide thread outlives it): every track still open closes now
        with self._lock:
            self._closing.extend(self.tracker.close_all(1 << 62))
        return self._finalize(1 << 62, model)

    def _finalize(self, seq: int, fallback: Inspector) -> list[Finished]:
        """The parts whose track closed at or before frame `seq` (all their frames are judged by then)."""
        with self._lock:
            ready = [t for t in self._closing if t.close_seq is not None and t.close_seq <= seq]
            self._closing = [t for t in self._closing if t not in ready]
            found = [self._parts.pop(t.id, None) for t in ready]
        done = []
        for evidence in found:
            if evidence is None or evidence.track is None:
                continue
            track = evidence.track
            # every frame of the part dropped or failed: conclude() makes it unjudgeable, so it is rejected
            judgement, best_frame = evidence.conclude(fallback)
            seq_shown = best_frame.seq if best_frame is not None else track.first_seq
            part = PartSeen(track.id, track.t_first, track.travel_first, seq_shown, track.truth_ng)
            done.append(Finished(part, judgement, best_frame.image if best_frame is not None else None))
        return done
