"""The runtime's value types. `Detections` is the one checked result type that flows from
postprocess through decision, tracking, archive and telemetry."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np


@dataclass
class Frame:
    """One camera image. `t_capture` is on the station's monotonic clock (seconds).
    `encoder_mm` is the belt position latched at capture (None in free-run without encoder).
    `part_id` is set by a part-present trigger (photo-eye) when the line has one.
    `truth` carries ground truth when the source knows it (synthetic conveyor, labelled replay)."""

    image: np.ndarray
    t_capture: float
    seq: int
    encoder_mm: float | None = None
    part_id: int | None = None
    truth: dict[str, Any] | None = None
    source: str = ""

    def __post_init__(self) -> None:
        img = self.image
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            shape = getattr(img, "shape", None)
            dtype = getattr(img, "dtype", type(img).__name__)
            raise ValueError(f"Frame.image must be an HxWx3 uint8 BGR array, got shape={shape} dtype={dtype}")


@dataclass(frozen=True)
class Detections:
    """N boxes in image pixels: `xyxy` (N,4) float32, `confidence` (N,) float32, `class_id` (N,) int64.
    Index with a boolean mask or integer array to filter: `dets[dets.confidence > 0.5]`."""

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray

    def __post_init__(self) -> None:
        xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4) if np.size(self.xyxy) else np.zeros((0, 4), np.float32)
        conf = np.asarray(self.confidence, dtype=np.float32).reshape(-1)
        cls = np.asarray(self.class_id).reshape(-1)
        if cls.size and not np.issubdtype(cls.dtype, np.integer):
            if not np.all(np.equal(np.mod(cls, 1), 0)):
                raise ValueError(f"Detections.class_id must hold integers, got {cls[:5]}")
        cls = cls.astype(np.int64)
        if not (len(xyxy) == len(conf) == len(cls)):
            raise ValueError(
                f"Detections arrays disagree in length: xyxy={len(xyxy)} confidence={len(conf)} class_id={len(cls)}"
            )
        if len(xyxy) and not np.all(np.isfinite(xyxy)):
            raise ValueError("Detections.xyxy contains NaN or inf")
        object.__setattr__(self, "xyxy", xyxy)
        object.__setattr__(self, "confidence", conf)
        object.__setattr__(self, "class_id", cls)

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    @classmethod
    def _checked(cls, xyxy: np.ndarray, confidence: np.ndarray, class_id: np.ndarray) -> "Detections":
        """Arrays taken by one index from a checked Detections: already of the right dtypes, shapes
        and finite, so the checks are not run again (filtering runs several times per frame)."""
        dets = object.__new__(cls)
        object.__setattr__(dets, "xyxy", xyxy)
        object.__setattr__(dets, "confidence", confidence)
        object.__setattr__(dets, "class_id", class_id)
        return dets

    def __len__(self) -> int:
        return len(self.confidence)

    def __getitem__(self, index: Any) -> "Detections":
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        index = np.asarray(index)
        if index.dtype == bool and index.shape != (len(self),):
            raise IndexError(f"boolean mask of shape {index.shape} does not fit {len(self)} detections")
        if index.ndim != 1 or not (index.dtype == bool or np.issubdtype(index.dtype, np.integer)):
            raise IndexError(f"Detections take a boolean mask or integer indices, got {index.dtype} "
                             f"of shape {index.shape}")
        return Detections._checked(self.xyxy[index], self.confidence[index], self.class_id[index])

    @property
    def area(self) -> np.ndarray:
        wh = np.clip(self.xyxy[:, 2:4] - self.xyxy[:, 0:2], 0, None)
        return wh[:, 0] * wh[:, 1]

    @property
    def center(self) -> np.ndarray:
        return (self.xyxy[:, 0:2] + self.xyxy[:, 2:4]) / 2

    def to_records(self, class_names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """JSON-friendly list, used by the archive, telemetry and the QA app."""
        out = []
        for box, conf, cid in zip(self.xyxy.tolist(), self.confidence.tolist(), self.class_id.tolist()):
            rec = {"xyxy": [round(v, 2) for v in box], "confidence": round(conf, 4), "class_id": cid}
            if class_names is not None and 0 <= cid < len(class_names):
                rec["class"] = class_names[cid]
            out.append(rec)
        return out

    @classmethod
    def from_records(cls, records: Sequence[dict[str, Any]]) -> "Detections":
        if not records:
            return cls.empty()
        return cls(
            np.array([r["xyxy"] for r in records], np.float32),
            np.array([r["confidence"] for r in records], np.float32),
            np.array([r["class_id"] for r in records], np.int64),
        )


class Outcome(str, enum.Enum):
    OK = "OK"
    NG = "NG"


@dataclass
class Verdict:
    """The decision for one physical part (made by inspector.make_verdict only). `reasons` are short
    machine-readable strings: the class names of the defects seen, or 'inference_failed',
    'deadline_missed'. `failsafe` marks a part rejected because it could not be judged (or judged in
    time), not because a defect was seen. `class_names` are those of the model that judged the part:
    the names of `detections`' class ids."""

    part_id: int
    outcome: Outcome
    reasons: list[str] = field(default_factory=list)
    detections: Detections = field(default_factory=Detections.empty)
    t_capture: float = 0.0
    t_decided: float = 0.0
    encoder_mm: float | None = None
    frame_seq: int = -1
    model_version: str = ""
    failsafe: bool = False
    truth_ng: bool | None = None
    class_names: tuple[str, ...] = ()

    @property
    def is_ng(self) -> bool:
        return self.outcome is Outcome.NG

    @property
    def latency_ms(self) -> float:
        return (self.t_decided - self.t_capture) * 1000.0


@dataclass(frozen=True)
class RejectCommand:
    """Fire the ejector for `part_id` at monotonic time `fire_at` for `pulse_s` seconds.
    `deadline` is the last moment a fire still hits the part."""

    part_id: int
    fire_at: float
    pulse_s: float
    deadline: float
    reason: str = ""
