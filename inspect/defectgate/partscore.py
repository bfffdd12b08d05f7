"""The part score: one number per part, learned from its detections, that decides OK / NG when the
bundle's sidecar declares it (key `part_score`) instead of "any box above its class threshold".

Why: on a textured but good surface one spurious box rejects the part under "any box"; a part score
weighs what the detector saw as a whole (the best score of each class, the runner-up, how many boxes,
how large) and is calibrated to the escape budget like the class thresholds were. It is a logistic
model over named features; the sidecar carries the names, weights, bias and threshold, so export and
runtime agree through the sidecar. The features are computed here, once, for the station, `evaluate`
(which fits it) and the QA app.

Feature names (each a float per part, from the detections at or above `box_floor` that survive the
station's spatial rules):
    top:<class>   highest confidence of that class, 0 when none
    second        second-highest confidence of any class, 0 when fewer than two boxes
    count         log(1 + number of boxes)
    area_top      area of the highest-confidence box as a share of the image
    area_max      largest box area as a share of the image
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .types import Detections

GLOBAL_FEATURES = ("second", "count", "area_top", "area_max")


def feature_names(classes: Sequence[str]) -> list[str]:
    """The full feature set for a model with `classes`, in the order export writes it."""
    return [f"top:{c}" for c in classes] + list(GLOBAL_FEATURES)


def unknown_features(names: Sequence[str], classes: Sequence[str]) -> list[str]:
    """The names among `names` this runtime cannot compute for a model with `classes` (a `top:` class
    the model lacks, or a feature it does not know)."""
    known = set(feature_names(classes))
    return [n for n in names if n not in known]


def part_features(dets: Detections, image_hw: tuple[int, int], classes: Sequence[str]) -> dict[str, float]:
    """Every feature of `feature_names(classes)` for one part from its candidate detections."""
    nc = len(classes)
    top = np.zeros(nc, np.float64)
    if len(dets):
        np.maximum.at(top, np.clip(dets.class_id, 0, nc - 1), dets.confidence.astype(np.float64))
    feats = {f"top:{c}": float(top[i]) for i, c in enumerate(classes)}
    conf = np.sort(dets.confidence.astype(np.float64))[::-1]
    h, w = image_hw
    areas = dets.area.astype(np.float64) / float(max(h * w, 1))
    feats["second"] = float(conf[1]) if len(conf) > 1 else 0.0
    feats["count"] = float(np.log1p(len(dets)))
    feats["area_top"] = float(areas[int(np.argmax(dets.confidence))]) if len(dets) else 0.0
    feats["area_max"] = float(areas.max()) if len(dets) else 0.0
    return feats


@dataclass(frozen=True)
class PartScore:
    """score = sigmoid(weights · features + bias); NG when score >= threshold."""

    classes: tuple[str, ...]
    features: tuple[str, ...]
    weights: np.ndarray  # (len(features),)
    bias: float
    threshold: float
    box_floor: float

    def vector(self, dets: Detections, image_hw: tuple[int, int]) -> np.ndarray:
        feats = part_features(dets, image_hw, self.classes)
        return np.array([feats[n] for n in self.features], np.float64)

    def score(self, dets: Detections, image_hw: tuple[int, int]) -> float:
        z = float(self.vector(dets, image_hw) @ self.weights + self.bias)
        return float(1.0 / (1.0 + np.exp(-np.clip(z, -60.0, 60.0))))

    def blame(self, dets: Detections) -> np.ndarray:
        """The detections an NG part is shown and named by: those of the class whose top box adds the
        most to the score (a reviewer sees why the part was rejected, not every faint box)."""
        if not len(dets):
            return np.zeros(0, bool)
        gain = []
        for c, name in enumerate(self.classes):
            key = f"top:{name}"
            of_c = dets.class_id == c
            best = float(dets.confidence[of_c].max()) if of_c.any() else 0.0
            gain.append(best * float(self.weights[self.features.index(key)]) if key in self.features else 0.0)
        if max(gain) <= 0.0:  # the global features carried it: name the strongest box's class
            return dets.class_id == dets.class_id[int(np.argmax(dets.confidence))]
        return dets.class_id == int(np.argmax(gain))


def part_score_of(spec, classes: Sequence[str]) -> PartScore | None:
    """The PartScore a sidecar's `part_score` section (bundle.PartScoreSpec) declares, or None."""
    if spec is None:
        return None
    return PartScore(tuple(classes), tuple(spec.features), np.asarray(spec.weights, np.float64), float(spec.bias),
                     float(spec.threshold), float(spec.box_floor))
