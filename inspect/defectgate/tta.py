"""Test-time augmentation: judge a frame as the model sees it, as its mirror images and shrunk, and
merge what those views see.

Why: a station judges a few parts a second while the model runs well over a hundred frames a second
on a CPU, so most of the time budget is idle. Spending it on more views of the same frame is an
ensemble for free: on NEU-DET, mirrors and two smaller scales raised a CPU model's val mAP50 by about
0.04 (docs/accuracy.md, "Test-time augmentation").

What the sidecar's `tta` declares (export writes it and calibrates the thresholds with it on, so the
station, `defectgate evaluate` and the bench all judge with the same views):
- `flips`: none, hflip (+ the left-right mirror) or hvflip (+ up-down and both). The mirrored views
  are averaged anchor by anchor: the head's anchors are the cells of one row-major grid per stride,
  level after level, so mirroring the input mirrors every grid; cell (i, j) of the frame sits at
  (i, cols - 1 - j) in the left-right view (exact because the input size is a multiple of every
  stride) and a box centre x there is W - x here. Un-mirroring a view is an index permutation plus
  cx -> W - cx; then scores and boxes are averaged. Only a `yolo_raw` head has such anchors.
- `scales`: 1.0 first, then smaller factors. A shrunk view is the letterboxed input resized by the
  factor and centred on a pad-grey canvas of the same size (as letterboxing the frame at a smaller
  gain would give), so the model file keeps its one static input shape. Scales see a defect at other
  sizes on other anchors, so they are not averaged per anchor: this backend returns one flip-averaged
  output per scale, boxes already mapped back to the frame's input pixels, stacked along the batch
  axis as (scales, 4 + nc, anchors), and `postprocess.decode` fuses them (`fuse_views`).
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from .backends.base import Backend
from .bundle import InputSpec, Sidecar, TtaSpec
from .errors import BackendError, BundleError

# the views of each flip setting, as (mirror left-right, mirror up-down); the first is the frame itself
FLIPS: dict[str, tuple[tuple[bool, bool], ...]] = {
    "none": ((False, False),),
    "hflip": ((False, False), (True, False)),
    "hvflip": ((False, False), (True, False), (False, True), (True, True)),
}
# what `defectgate export --tta NAME` writes into the sidecar; the scales are ultralytics' own TTA scales
PRESETS: dict[str, TtaSpec] = {
    "none": TtaSpec(),
    "hflip": TtaSpec(flips="hflip"),
    "hvflip": TtaSpec(flips="hvflip"),
    "hvflip-ms": TtaSpec(flips="hvflip", scales=[1.0, 0.83, 0.67]),
}


def preset(name: str) -> TtaSpec:
    if name not in PRESETS:
        raise BundleError(f"tta '{name}' is not one of {', '.join(PRESETS)}")
    return PRESETS[name]


def anchor_grids(imgsz: tuple[int, int], strides: list[int]) -> list[tuple[int, int]]:
    """(rows, cols) of each stride level's grid, in the head's anchor order."""
    h, w = imgsz
    return [(h // s, w // s) for s in strides]


def view_permutation(grids: list[tuple[int, int]], flip_x: bool, flip_y: bool) -> np.ndarray:
    """perm such that view_output[..., perm] puts each anchor of the mirrored view on the anchor of
    the original frame that sees the same place."""
    parts, start = [], 0
    for rows, cols in grids:
        idx = np.arange(rows * cols).reshape(rows, cols)
        if flip_x:
            idx = idx[:, ::-1]
        if flip_y:
            idx = idx[::-1, :]
        parts.append(idx.ravel() + start)
        start += rows * cols
    return np.concatenate(parts)


def pad_values(spec: InputSpec) -> np.ndarray:
    """The letterbox grey as the model input sees it, per channel (after scale, mean and std)."""
    if spec.dtype == "uint8":
        return np.full(3, spec.letterbox_pad, np.float32)
    return (spec.letterbox_pad * spec.scale - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)


class TTABackend:
    """A Backend that runs the wrapped one on every view the spec declares: per scale, the flips
    averaged per anchor; returns (scales, 4 + nc, anchors) in the frame's input pixels.

    A bundle exported with its views as the batch (`input.batch` = the number of views) runs them all
    as one inference; a batch-1 bundle runs one inference per view. The views come in the layout the
    wrapped backend takes: NCHW floats, or the NHWC uint8 canvas of an engine that normalises in its
    graph (mirror views only: a shrunk view is resized from the float input)."""

    def __init__(self, backend: Backend, spec: TtaSpec, input_spec: InputSpec, strides: list[int], num_classes: int):
        self.backend, self.spec = backend, spec
        self.h, self.w = input_spec.imgsz
        self.rows = 4 + num_classes
        grids = anchor_grids((self.h, self.w), strides)
        self.anchors = sum(r * c for r, c in grids)
        flips = [(fx, fy, view_permutation(grids, fx, fy)) for fx, fy in FLIPS[spec.flips]]
        self.views = [(scale, *flip) for scale in spec.scales for flip in flips]  # scale-major, the frame first
        self.per_scale = len(flips)
        self.input_format = getattr(backend, "input_format", "nchw")
        self.concurrency = int(getattr(backend, "concurrency", 1))
        self.nhwc = self.input_format == "nhwc_u8"
        if self.nhwc and spec.scales != [1.0]:
            raise BackendError(f"tta scales {spec.scales} need the float NCHW input; the backend takes the uint8 canvas")
        self.axis_y, self.axis_x = (1, 2) if self.nhwc else (2, 3)
        self.batched = input_spec.batch == len(self.views) > 1
        self.pad = pad_values(input_spec).reshape(3, 1, 1)
        scales = "" if spec.scales == [1.0] else "@" + ",".join(f"{s:g}" for s in spec.scales)
        self.name = f"{backend.name}+tta:{spec.flips}{scales}" + (f"x{len(self.views)}batch" if self.batched else "")

    def view_batch(self, batch: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int]]]:
        """Every view of a one-frame batch stacked on the batch axis (what a view-batch model takes, and
        what INT8 calibration feeds it), and each scale's (left, top) offset on its canvas."""
        views = np.empty((len(self.views), *batch.shape[1:]), batch.dtype)  # per call: infer may run in 2 threads
        shifts = []
        for k, (scale, flip_x, flip_y, _) in enumerate(self.views):
            if k % self.per_scale == 0:
                shrunk, left, top = self._shrink(batch, scale)
                shifts.append((left, top))
            view = shrunk[0]
            if flip_x:
                view = np.flip(view, self.axis_x - 1)
            if flip_y:
                view = np.flip(view, self.axis_y - 1)
            views[k] = view
        return views, shifts

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        views, shifts = self.view_batch(batch)
        raw = self._run(views)
        out = np.empty((len(self.spec.scales), self.rows, self.anchors), np.float32)
        for k, scale in enumerate(self.spec.scales):
            group = range(k * self.per_scale, (k + 1) * self.per_scale)
            total = np.zeros((self.rows, self.anchors), np.float32)
            for v in group:
                _, flip_x, flip_y, perm = self.views[v]
                one = raw[v][:, perm]  # a copy: the backend may reuse its buffer
                if flip_x:
                    one[0] = self.w - one[0]
                if flip_y:
                    one[1] = self.h - one[1]
                total += one
            total /= self.per_scale
            left, top = shifts[k]
            total[0] = (total[0] - left) / scale  # cx, cy, w, h back to the frame's input pixels
            total[1] = (total[1] - top) / scale
            total[2:4] /= scale
            out[k] = total
        return [out]

    def _run(self, views: np.ndarray) -> np.ndarray:
        """(V, rows, anchors): one inference of the whole view batch, or one per view."""
        if self.batched:
            raws = [np.asarray(self.backend.infer(views)[0], np.float32)]
        else:
            raws = [np.asarray(self.backend.infer(views[k:k + 1])[0], np.float32) for k in range(len(views))]
        want = (len(views) if self.batched else 1, self.rows, self.anchors)
        for raw in raws:
            if raw.shape != want:
                raise BackendError(f"model output shape {raw.shape} is not {want} that tta expects from the "
                                   f"sidecar's imgsz, output.strides and input.batch")
        return raws[0] if self.batched else np.concatenate(raws)

    def _shrink(self, batch: np.ndarray, scale: float) -> tuple[np.ndarray, int, int]:
        """The input resized by `scale` and centred on a canvas of pad grey of the same size."""
        if scale == 1.0:
            return batch, 0, 0
        nh, nw = int(round(self.h * scale)), int(round(self.w * scale))
        top, left = (self.h - nh) // 2, (self.w - nw) // 2
        hwc = np.ascontiguousarray(batch[0].transpose(1, 2, 0), np.float32)
        small = cv2.resize(hwc, (nw, nh), interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1)
        view = np.empty_like(batch)
        view[0] = self.pad
        view[0, :, top:top + nh, left:left + nw] = small
        return view, left, top

    def close(self) -> None:
        self.backend.close()


class _NoEngine:
    name = "none"

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:  # pragma: no cover - never called
        raise BackendError("view_batcher builds views only")

    def close(self) -> None:
        pass


def view_batcher(sidecar: Sidecar) -> Callable[[np.ndarray], tuple[np.ndarray, list]] | None:
    """For a model that takes a frame's views as its batch: one-frame NCHW batch -> the view batch (INT8
    calibration feeds the model what the station will). None for a batch-1 model."""
    if sidecar.input.batch == 1:
        return None
    return TTABackend(_NoEngine(), sidecar.tta, sidecar.input, list(sidecar.output.strides),
                      len(sidecar.classes)).view_batch


def with_tta(backend: Backend, sidecar: Sidecar) -> Backend:
    """The backend as the sidecar says to run it: wrapped when it declares views, else as it is."""
    if not sidecar.tta.active:
        return backend
    return TTABackend(backend, sidecar.tta, sidecar.input, list(sidecar.output.strides), len(sidecar.classes))
