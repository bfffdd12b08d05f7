"""Model suggestions for labeling: the bundle judges the image through the runtime's Detector (the
station's preprocessing, test-time views and decode) and the station's per-class threshold rule (the
bundle's calibrated `class_thresholds`, else its `conf_threshold`; or, for a bundle that declares a part
score, that score and the defects it names), so a pre-label is exactly a defect the station would have
rejected for. A reviewer who asks for more candidates passes `conf`: every class threshold is lowered
to it (never raised), box by box."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from defectgate.bundle import load_bundle
from defectgate.decision import Decision, build_decision
from defectgate.detector import Detector
from defectgate.partscore import part_score_of


class Prelabeler:
    def __init__(self, bundle_dir: str | Path, backend: str = "onnxruntime", threads: int = 1):
        bundle = load_bundle(bundle_dir)
        side = bundle.sidecar
        self.classes = list(bundle.classes)
        self.version = bundle.version
        self.thresholds = {c: side.threshold_for(c) for c in self.classes}
        self._decision = build_decision(self.classes, side.conf_threshold, side.class_thresholds, {},
                                        part_score=part_score_of(side.part_score, self.classes))
        self._detector = Detector(bundle, backend_name=backend, threads=threads)
        self._lock = threading.Lock()  # the Detector's input buffer is reused between calls

    def _rules(self, conf: float) -> Decision:
        """The class-threshold rule, each threshold at most `conf`."""
        lowered = {c: min(t, conf) for c, t in self.thresholds.items()}
        return build_decision(self.classes, 0.0, {}, lowered)

    def predict(self, image_bgr: np.ndarray, conf: float | None = None) -> list[dict[str, Any]]:
        """Detections as records {xyxy, confidence, class_id, class} in source-image pixels."""
        decision = self._decision if conf is None else self._rules(conf)
        with self._lock:
            dets = self._detector.detect(image_bgr, conf=decision.confidence_floor)
        if conf is None:  # the station's own decision: what it would reject the part for
            return decision(dets, image_bgr.shape[:2])[2].to_records(self.classes)
        return dets[decision.keep(dets, image_bgr.shape[:2])].to_records(self.classes)

    def close(self) -> None:
        self._detector.close()
