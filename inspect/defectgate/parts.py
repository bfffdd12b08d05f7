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
class _Evidence:
    """Free-run: what the frames of one tracked part said so far."""

    track: Track
    judged: int = 0
    defects: set[str] = field(default_factory=set)
    failure: list[str] = field(default_factory=list)
    best: tuple[int, Frame | None, Detections] = (-1, None, Detections.empty())  # (n defects, frame, dets)
    model: Inspector | None = None  # the model that judged its latest frame


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
                self._parts[track.id] = _Evidence(track)
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
                    self._add(evidence, frame, judgement, per_part.get(track_id, Detections.empty()))
        return self._finalize(frame.seq, judgement.model)

    def finish(self, model: Inspector) -> list[Finished]:
        # capture has ended (the decide thread outlives it): every track still open closes now
        with self._lock:
            self._closing.extend(self.tracker.close_all(1 << 62))
        return self._finalize(1 << 62, model)

    @staticmethod
    def _add(evidence: _Evidence, frame: Frame, judgement: Judgement, dets: Detections) -> None:
        evidence.model = judgement.model
        if judgement.failure:
            evidence.failure.extend(r for r in judgement.failure if r not in evidence.failure)
            return
        evidence.judged += 1
        if len(dets):
            evidence.defects.update(judgement.model.reasons(dets))
        if len(dets) > evidence.best[0] or evidence.best[1] is None:
            evidence.best = (len(dets), frame, dets)

    def _finalize(self, seq: int, fallback: Inspector) -> list[Finished]:
        """The parts whose track closed at or before frame `seq` (all their frames are judged by then)."""
        with self._lock:
            ready = [t for t in self._closing if t.close_seq is not None and t.close_seq <= seq]
            self._closing = [t for t in self._closing if t not in ready]
            found = [self._parts.pop(t.id, None) for t in ready]
        done = []
        for evidence in found:
            if evidence is None:
                continue
            track, model = evidence.track, evidence.model or fallback
            _, best_frame, best_dets = evidence.best
            if evidence.judged == 0:  # every frame of the part was dropped or failed: reject it
                judgement = Judgement(model, [], Detections.empty(), evidence.failure or ["unjudged"])
                seq_shown = track.first_seq
            else:
                judgement = Judgement(model, sorted(evidence.defects), best_dets, [])
                seq_shown = best_frame.seq if best_frame is not None else track.first_seq
            part = PartSeen(track.id, track.t_first, track.travel_first, seq_shown, track.truth_ng)
            done.append(Finished(part, judgement, best_frame.image if best_frame is not None else None))
        return done
