"""Decision rules. Each rule maps (Detections, image shape) to a boolean mask of the detections it
keeps; filtering is indexing. A part is NG when any detection survives every rule, or, when the bundle
declares a part score (partscore.py), when the score of the detections that survive the rules reaches
its threshold."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Protocol, Sequence

import cv2
import numpy as np

from .errors import ConfigError
from .partscore import PartScore
from .types import Detections, Outcome


class Rule(Protocol):
    def __call__(self, dets: Detections, image_hw: tuple[int, int]) -> np.ndarray: ...


@dataclass(frozen=True)
class ClassThreshold:
    """Keep a detection when its confidence reaches its class's threshold."""

    thresholds: np.ndarray  # (num_classes,)

    def __call__(self, dets: Detections, image_hw: tuple[int, int]) -> np.ndarray:
        # mode="clip": an out-of-range class id takes the nearest class's threshold (np.clip, in one call)
        return dets.confidence >= np.take(self.thresholds, dets.class_id, mode="clip")


@dataclass(frozen=True)
class RegionOfInterest:
    """Keep a detection whose box centre lies inside a polygon given in normalised coordinates."""

    polygon: np.ndarray  # (P, 2) in 0..1

    def __call__(self, dets: Detections, image_hw: tuple[int, int]) -> np.ndarray:
        h, w = image_hw
        poly = (self.polygon * np.array([w, h], np.float32)).astype(np.float32)
        return np.array([cv2.pointPolygonTest(poly, (float(x), float(y)), False) >= 0 for x, y in dets.center], bool)


@dataclass(frozen=True)
class MinArea:
    min_area_px: float

    def __call__(self, dets: Detections, image_hw: tuple[int, int]) -> np.ndarray:
        return dets.area >= self.min_area_px


@dataclass(frozen=True)
class IgnoreClasses:
    class_ids: frozenset[int]

    def __call__(self, dets: Detections, image_hw: tuple[int, int]) -> np.ndarray:
        return ~np.isin(dets.class_id, list(self.class_ids))


@dataclass
class Decision:
    """`rules` keep the defects that count. Without `part_score` each kept defect rejects the part; with
    it the kept ones (the class-threshold rule then keeps everything at or above the score's box floor)
    are the part score's evidence, and the part is NG when that score reaches its threshold."""

    rules: list[Rule] = field(default_factory=list)
    class_names: Sequence[str] = ()
    part_score: PartScore | None = None

    @property
    def confidence_floor(self) -> float:
        """The lowest confidence any rule can keep: decode need not produce boxes below it."""
        floors = [float(r.thresholds.min()) for r in self.rules if isinstance(r, ClassThreshold)]
        return max(floors) if floors else 0.0

    def keep(self, dets: Detections, image_hw: tuple[int, int]) -> np.ndarray:
        mask = np.ones(len(dets), bool)
        for rule in self.rules:
            if not mask.any():
                break
            mask &= rule(dets, image_hw)
        return mask

    def __call__(self, dets: Detections, image_hw: tuple[int, int]) -> tuple[Outcome, list[str], Detections]:
        if len(dets) == 0:  # a clean part: no rule can keep anything
            return Outcome.OK, [], dets
        kept = dets[self.keep(dets, image_hw)]
        if self.part_score is not None:
            if len(kept) == 0 or self.part_score.score(kept, image_hw) < self.part_score.threshold:
                return Outcome.OK, [], Detections.empty()
            kept = kept[self.part_score.blame(kept)]
        if len(kept) == 0:
            return Outcome.OK, [], kept
        return Outcome.NG, self.reasons(kept), kept

    def reasons(self, kept: Detections) -> list[str]:
        """The sorted class names of kept defects: what an NG verdict gives as its reasons."""
        return sorted({self._name(c) for c in kept.class_id.tolist()})

    def _name(self, class_id: int) -> str:
        return self.class_names[class_id] if 0 <= class_id < len(self.class_names) else f"class{class_id}"


def build_decision(class_names: Sequence[str], bundle_threshold: float, bundle_class_thresholds: dict[str, float],
                   thresholds: dict[str, float], roi: Sequence[tuple[float, float]] | None = None,
                   min_area_px: float = 0.0, ignore_classes: Sequence[str] = (),
                   part_score: PartScore | None = None, part_threshold: float | None = None) -> Decision:
    """Rules from the station config layered over the bundle's calibrated thresholds, or over its part
    score when the bundle declares one (`part_threshold` from the config replaces the score's own)."""
    for name in list(thresholds) + list(ignore_classes):
        if name not in class_names:
            raise ConfigError(f"decision: class '{name}' is not in the model's classes {list(class_names)}")
    if part_score is not None:
        if thresholds:
            raise ConfigError(f"decision.thresholds {thresholds}: this bundle decides with a part score (sidecar key "
                              "part_score), not per-class thresholds; set decision.part_threshold instead")
        if part_threshold is not None:
            part_score = replace(part_score, threshold=float(part_threshold))
        per_class = np.full(len(class_names), part_score.box_floor, np.float32)
    elif part_threshold is not None:
        raise ConfigError(f"decision.part_threshold {part_threshold}: this bundle declares no part score "
                          "(sidecar key part_score); export it with --part-score or use decision.thresholds")
    else:
        per_class = np.array([thresholds.get(n, bundle_class_thresholds.get(n, bundle_threshold))
                              for n in class_names], np.float32)
    rules: list[Rule] = [ClassThreshold(per_class)]
    if ignore_classes:
        rules.append(IgnoreClasses(frozenset(class_names.index(n) for n in ignore_classes)))
    if roi is not None:
        rules.append(RegionOfInterest(np.asarray(roi, np.float32)))
    if min_area_px > 0:
        rules.append(MinArea(min_area_px))
    return Decision(rules, list(class_names), part_score)
