"""One model judging parts, and the one place a `Verdict` is made.

`Inspector` = `Detector` (image -> Detections, detector.py) + `Decision` (rules -> the defects that make
a part NG, decision.py). It judges frames into `Judgement`s; which part a frame shows, and when a part
has been seen enough, is the part assigner's job (parts.py). `make_verdict` turns a part and the
judgement of the model that judged it into its Verdict: the outcome, the reasons in that model's class
names, the fail-safe and late-verdict rules. Nothing else builds a Verdict.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .bundle import Bundle
from .clock import Clock
from .decision import Decision
from .detector import Detector
from .preprocess import LetterboxInfo
from .types import Detections, Frame, Outcome, Verdict


@dataclass(frozen=True)
class PartSeen:
    """Where and when a part was captured: what its Verdict reports besides the judgement."""

    part_id: int
    t_capture: float
    encoder_mm: float | None
    frame_seq: int
    truth_ng: bool | None

    @classmethod
    def of_frame(cls, frame: Frame) -> "PartSeen":
        """One frame per part (triggered): the photo-eye's part id, else the frame's sequence number; the
        truth where the source knows it (synthetic, labelled replay)."""
        part = frame.part_id if frame.part_id is not None else frame.seq
        truth = None if frame.truth is None or "ng" not in frame.truth else bool(frame.truth["ng"])
        return cls(part, frame.t_capture, frame.encoder_mm, frame.seq, truth)


@dataclass
class Judgement:
    """What one model made of a frame or a part: the class names of the rule-kept defects (empty: OK)
    and the boxes to keep with the verdict, or, when it could not judge, why (`failure`)."""

    model: "Inspector"
    defects: list[str]
    detections: Detections
    failure: list[str]

    @property
    def is_ng(self) -> bool:
        return bool(self.failure or self.defects)


def make_verdict(part: PartSeen, judgement: Judgement, t_decided: float, on_time: bool = True) -> Verdict:
    """The Verdict for `part`. A part that could not be judged is NG and fail-safe; a verdict that came
    after the part's decision deadline stands as NG (the reject armed at capture fires), fail-safe when
    it would have passed the part, with `deadline_missed` among its reasons."""
    if judgement.failure:
        outcome, reasons, detections, failsafe = Outcome.NG, list(judgement.failure), Detections.empty(), True
    else:
        outcome = Outcome.NG if judgement.defects else Outcome.OK
        reasons, detections, failsafe = list(judgement.defects), judgement.detections, False
    if not on_time:
        if outcome is Outcome.OK:
            outcome, failsafe = Outcome.NG, True
        reasons.append("deadline_missed")
    model = judgement.model
    return Verdict(part_id=part.part_id, outcome=outcome, reasons=reasons, detections=detections,
                   t_capture=part.t_capture, t_decided=t_decided, encoder_mm=part.encoder_mm,
                   frame_seq=part.frame_seq, model_version=model.version, failsafe=failsafe,
                   truth_ng=part.truth_ng, class_names=tuple(model.classes))


class Inspector:
    """Frame in, Judgement out, for one model. Swapping models means building a new Inspector; the
    station closes the old one once its last frame is judged (hotswap.ModelSlot)."""

    def __init__(self, detector: Detector, decision: Decision, clock: Clock):
        self.detector, self.decision, self.clock = detector, decision, clock
        self.version = detector.version
        self.classes = detector.classes

    @property
    def bundle(self) -> Bundle:
        return self.detector.bundle

    @property
    def backend(self):
        return self.detector.backend

    # ---- the stages the station runs in its threads ----
    def prepare(self, image: np.ndarray) -> tuple[np.ndarray, LetterboxInfo]:
        return self.detector.prepare(image)

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        return self.detector.infer(batch)

    def judge(self, frame: Frame, outputs: list[np.ndarray], info: LetterboxInfo) -> Judgement:
        _, defects, kept = self.decision(self.detector.decode(outputs, info), frame.image.shape[:2])
        return Judgement(self, defects, kept, [])

    def failed(self, reason: str) -> Judgement:
        """The judgement on a frame this model could not judge (preprocessing, engine or decode failed)."""
        return Judgement(self, [], Detections.empty(), [reason])

    def reasons(self, kept: Detections) -> list[str]:
        """Kept defects as this model names them (free-run: a part's share of a frame's defects)."""
        return self.decision.reasons(kept)

    # ---- the whole path for one frame (bench, tests): pure but for the injected clock ----
    def step(self, frame: Frame) -> Verdict:
        batch, info = self.prepare(frame.image)
        return make_verdict(PartSeen.of_frame(frame), self.judge(frame, self.infer(batch), info), self.clock.now())

    def warm_up(self) -> None:
        self.detector.warm_up()

    def close(self) -> None:
        self.detector.close()
