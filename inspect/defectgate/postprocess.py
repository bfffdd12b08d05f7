"""Decode the raw head output that the sidecar declares into `Detections` in source pixels.

Two layouts (bundle.OutputLayout):
- yolo_raw (YOLO11 and other anchor-free heads): (1, 4 + nc, A); rows 0-3 are cx, cy, w, h in input
  pixels, rows 4.. are per-class scores. Needs confidence filtering and class-wise NMS.
- end2end (YOLO26, NMS-free): (1, max_det, 6) with x1, y1, x2, y2, score, class in input pixels.

A yolo_raw output with V > 1 rows on its first axis holds V views of the same frame (tta.py: one per
scale, boxes already in the frame's input pixels): each is decoded at VIEW_FLOOR and the views are
fused box by box (`fuse_views`) before the caller's threshold applies, so that a station deciding at
0.3 and an evaluation sweeping from 0.001 see the same fused scores.
"""

from __future__ import annotations

import numpy as np

from .bundle import OutputSpec
from .errors import BackendError
from .preprocess import LetterboxInfo
from .types import Detections


SMALL_NMS = 64  # up to this many candidates, one IoU matrix instead of numpy calls per kept box


def nms(xyxy: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression; returns kept indices, highest score first."""
    if len(scores) == 0:
        return np.zeros(0, np.int64)
    x1, y1, x2, y2 = xyxy.T
    # np.maximum(., 0) rather than np.clip: the same values, without clip's per-call overhead (this loop
    # runs once per kept box of every frame)
    areas = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    order = scores.argsort()[::-1]
    if len(order) <= SMALL_NMS:
        return _nms_small(xyxy[order], areas[order], order, iou_threshold)
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        iw = np.maximum(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0)
        ih = np.maximum(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0)
        inter = iw * ih
        iou = inter / (areas[i] + areas[rest] - inter + 1e-9)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, np.int64)


def _nms_small(xyxy: np.ndarray, areas: np.ndarray, order: np.ndarray, iou_threshold: float) -> np.ndarray:
    """`nms` for a few candidates already in score order (the usual frame: a handful of boxes above the
    floor): the IoU of every pair at once, with the same float32 expression as the loop above, then the
    greedy pass in plain Python. The loop's numpy calls per kept box cost more than this whole matrix."""
    x1, y1, x2, y2 = (c[:, None] for c in xyxy.T)
    iw = np.maximum(np.minimum(x2, x2.T) - np.maximum(x1, x1.T), 0)
    ih = np.maximum(np.minimum(y2, y2.T) - np.maximum(y1, y1.T), 0)
    inter = iw * ih
    overlaps = (inter / (areas[:, None] + areas[None, :] - inter + 1e-9) > iou_threshold).tolist()
    keep, suppressed = [], [False] * len(order)
    for i, row in enumerate(overlaps):
        if suppressed[i]:
            continue
        keep.append(i)
        for j in range(i + 1, len(row)):
            suppressed[j] = suppressed[j] or row[j]
    return order[keep]


def batched_nms(xyxy: np.ndarray, scores: np.ndarray, class_id: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Class-aware NMS by offsetting each class into its own coordinate range."""
    if len(scores) == 0:
        return np.zeros(0, np.int64)
    offset = class_id.astype(np.float32)[:, None] * (float(xyxy.max()) + 1.0)
    return nms(xyxy + offset, scores, iou_threshold)


VIEW_FLOOR = 0.001  # each TTA view is decoded this low, so every contribution reaches the fused score
FUSE_IOU = 0.55  # boxes of different views at this IoU or more are one defect (weighted box fusion's default)


def _decode_raw(raw: np.ndarray, num_classes: int, conf_threshold: float, iou_threshold: float,
                max_det: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One (4 + nc, A) yolo_raw view -> xyxy, confidence, class_id in input pixels, after NMS."""
    if raw.shape[0] != 4 + num_classes:
        raise BackendError(
            f"model output has {raw.shape[0]} rows, yolo_raw with {num_classes} classes needs {4 + num_classes}; "
            "the sidecar does not match the model"
        )
    # the score threshold first: on a clean part no anchor passes it and no box arithmetic is done
    keep = np.flatnonzero(raw[4:].max(0) >= conf_threshold)
    if not len(keep):
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    scores = raw[4:, keep]
    class_id = scores.argmax(0)
    conf = scores[class_id, np.arange(len(keep))]
    cx, cy, w, h = raw[:4, keep]
    xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
    idx = batched_nms(xyxy, conf, class_id, iou_threshold)[:max_det]
    return xyxy[idx], conf[idx], class_id[idx]


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) IoU of xyxy boxes; evaluation and export's parity check use it too."""
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter + 1e-9)


def fuse_views(views: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
               iou_threshold: float = FUSE_IOU) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted box fusion of per-view detections. Highest score first, each unclaimed box gathers the
    unclaimed boxes of its class that overlap it by `iou_threshold`; the fused box is their
    score-weighted mean, its score the mean over all views of each view's best score in the group (a
    view that missed the defect counts 0), so a defect seen by every view keeps its score and one seen
    by a single view is discounted."""
    xyxy = np.concatenate([v[0] for v in views]).astype(np.float32, copy=False)
    conf = np.concatenate([v[1] for v in views]).astype(np.float32, copy=False)
    cls = np.concatenate([v[2] for v in views])
    view = np.concatenate([np.full(len(v[1]), k) for k, v in enumerate(views)]).astype(np.int64)
    if len(conf) == 0:
        return xyxy.reshape(0, 4), conf, cls
    near = (pairwise_iou(xyxy, xyxy) >= iou_threshold) & (cls[:, None] == cls[None, :])
    np.fill_diagonal(near, True)
    claimed = np.zeros(len(conf), bool)
    out_box, out_conf, out_cls = [], [], []
    for i in np.argsort(-conf, kind="stable"):
        if claimed[i]:
            continue
        group = np.flatnonzero(near[i] & ~claimed)
        claimed[group] = True
        w = conf[group]
        best = np.zeros(len(views), np.float32)
        np.maximum.at(best, view[group], w)
        out_box.append((xyxy[group] * w[:, None]).sum(0) / w.sum())
        out_conf.append(best.sum() / len(views))
        out_cls.append(cls[i])
    order = np.argsort(-np.asarray(out_conf), kind="stable")
    return (np.asarray(out_box, np.float32)[order], np.asarray(out_conf, np.float32)[order],
            np.asarray(out_cls, np.int64)[order])


def decode(raw: np.ndarray, spec: OutputSpec, num_classes: int, info: LetterboxInfo,
           conf_threshold: float, iou_threshold: float, max_det: int = 300) -> Detections:
    """Decode one image's output to Detections in source-image pixels (batch index 0, or the views
    of one frame that tta.py stacked on that axis)."""
    raw = np.asarray(raw, dtype=np.float32)
    views = raw if raw.ndim == 3 else raw[None]
    if spec.layout == "yolo_raw" and len(views) > 1:
        decoded = [_decode_raw(v, num_classes, min(conf_threshold, VIEW_FLOOR), iou_threshold, max_det) for v in views]
        xyxy, conf, class_id = fuse_views(decoded)
        keep = np.flatnonzero(conf >= conf_threshold)[:max_det]
        xyxy, conf, class_id = xyxy[keep], conf[keep], class_id[keep]
    elif spec.layout == "yolo_raw":
        xyxy, conf, class_id = _decode_raw(views[0], num_classes, conf_threshold, iou_threshold, max_det)
        if not len(conf):
            return Detections.empty()
    elif spec.layout == "end2end":
        raw = views[0]
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
