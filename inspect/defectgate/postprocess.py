"""Decode the raw head output that the sidecar declares into `Detections` in source pixels.

Two layouts (bundle.OutputLayout):
- yolo_raw (YOLO11 and other anchor-free heads): (1, 4 + nc, A); rows 0-3 are cx, cy, w, h in input
  pixels, rows 4.. are per-class scores. Needs confidence filtering and class-wise NMS.
- end2end (YOLO26, NMS-free): (1, max_det, 6) with x1, y1, x2, y2, score, class in input pixels.
"""

from __future__ import annotations

import numpy as np

from .bundle import OutputSpec
from .errors import BackendError
from .preprocess import LetterboxInfo
from .types import Detections


def nms(xyxy: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression; returns kept indices, highest score first."""
    if len(scores) == 0:
        return np.zeros(0, np.int64)
    x1, y1, x2, y2 = xyxy.T
    areas = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    order = scores.argsort()[::-1]
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        iw = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        ih = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = iw * ih
        iou = inter / (areas[i] + areas[rest] - inter + 1e-9)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, np.int64)


def batched_nms(xyxy: np.ndarray, scores: np.ndarray, class_id: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Class-aware NMS by offsetting each class into its own coordinate range."""
    if len(scores) == 0:
        return np.zeros(0, np.int64)
    offset = class_id.astype(np.float32)[:, None] * (float(xyxy.max()) + 1.0)
    return nms(xyxy + offset, scores, iou_threshold)


def decode(raw: np.ndarray, spec: OutputSpec, num_classes: int, info: LetterboxInfo,
           conf_threshold: float, iou_threshold: float, max_det: int = 300) -> Detections:
    """Decode one image's output (batch index 0) to Detections in source-image pixels."""
    raw = np.asarray(raw, dtype=np.float32)
    if raw.ndim == 3:
        raw = raw[0]
    if spec.layout == "yolo_raw":
        if raw.shape[0] != 4 + num_classes:
            raise BackendError(
                f"model output has {raw.shape[0]} rows, yolo_raw with {num_classes} classes needs {4 + num_classes}; "
                "the sidecar does not match the model"
            )
        scores_all = raw[4:]
        class_id = scores_all.argmax(0)
        conf = scores_all[class_id, np.arange(raw.shape[1])]
        keep = conf >= conf_threshold
        if not keep.any():
            return Detections.empty()
        cx, cy, w, h = raw[:4, keep]
        xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
        conf, class_id = conf[keep], class_id[keep]
        idx = batched_nms(xyxy, conf, class_id, iou_threshold)[:max_det]
        xyxy, conf, class_id = xyxy[idx], conf[idx], class_id[idx]
    elif spec.layout == "end2end":
        if raw.ndim != 2 or raw.shape[1] != 6:
            raise BackendError(f"model output shape {raw.shape} is not end2end (max_det, 6); the sidecar does not match")
        keep = raw[:, 4] >= conf_threshold
        rows = raw[keep][:max_det]
        xyxy, conf, class_id = rows[:, :4], rows[:, 4], rows[:, 5].round().astype(np.int64)
        if len(class_id) and (class_id.min() < 0 or class_id.max() >= num_classes):
            raise BackendError(f"model output has class ids up to {class_id.max()}, the sidecar lists {num_classes} classes")
    else:  # pragma: no cover - the sidecar schema forbids other values
        raise BackendError(f"unknown output layout '{spec.layout}'")
    return Detections(info.to_source(xyxy), conf, class_id)
