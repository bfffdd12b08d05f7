"""Model suggestions for labeling: the bundle runs through the same runtime path as the line
(load_backend -> Preprocessor -> backend.infer -> decode), so a pre-label is exactly what the
station would have seen, at a lower threshold when the reviewer asks for more candidates."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from defectgate.backends import load_backend
from defectgate.bundle import load_bundle
from defectgate.postprocess import decode
from defectgate.preprocess import Preprocessor


class Prelabeler:
    def __init__(self, bundle_dir: str | Path, backend: str = "onnxruntime", threads: int = 1):
        self.bundle = load_bundle(bundle_dir)
        self.classes = list(self.bundle.classes)
        self.version = self.bundle.version
        self._backend = load_backend(self.bundle, backend, threads)
        self._pre = Preprocessor(self.bundle.sidecar.input)
        self._lock = threading.Lock()  # the preprocessor's buffers are reused between calls

    def predict(self, image_bgr: np.ndarray, conf: float | None = None) -> list[dict[str, Any]]:
        """Detections as records {xyxy, confidence, class_id, class} in source-image pixels."""
        sc = self.bundle.sidecar
        with self._lock:
            batch, info = self._pre(image_bgr)
            raw = self._backend.infer(batch)
            dets = decode(raw[0], sc.output, len(self.classes), info,
                          sc.conf_threshold if conf is None else conf, sc.iou_threshold, sc.output.max_det)
        return dets.to_records(self.classes)

    def close(self) -> None:
        self._backend.close()
