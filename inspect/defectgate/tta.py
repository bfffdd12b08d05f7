"""Flip test-time augmentation: judge a frame as the model sees it and as its mirror images, and
average the head's dense output before the one decode.

Why: a station judges a few parts a second while the model runs well over a hundred frames a second
on a CPU, so most of the time budget is idle. Running the mirrored views too and averaging their
scores per anchor is an ensemble for the price of 2-4 inferences (docs/accuracy.md measures it).

How, for a `yolo_raw` head (the only layout it applies to): the head's A anchors are the cells of one
grid per stride, level after level, each row-major: level l has (H / s_l) x (W / s_l) cells. Mirroring
the input left-right mirrors every grid, so the cell (i, j) of the original sits at (i, w_l - 1 - j) in
the mirrored view (exact because H and W are multiples of every stride), and a box centre x in the
view is W - x in the original. Un-mirroring a view is therefore an index permutation plus cx -> W - cx
(and likewise for up-down with cy -> H - cy). The views are then averaged, anchor by anchor, and the
usual decode (confidence floor + NMS) runs once on the mean. Nothing changes for `none`.

The sidecar declares it (`tta`, with the head's `output.strides`): export calibrates the thresholds
with the views on, so the station, `defectgate evaluate` and the bench all judge with the same views.
"""

from __future__ import annotations

import numpy as np

from .backends.base import Backend
from .bundle import Sidecar
from .errors import BackendError

# the views of each mode, as (mirror left-right, mirror up-down); the first view is always the frame
MODES: dict[str, tuple[tuple[bool, bool], ...]] = {
    "none": ((False, False),),
    "hflip": ((False, False), (True, False)),
    "hvflip": ((False, False), (True, False), (False, True), (True, True)),
}


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


class FlipTTABackend:
    """A Backend that runs the wrapped one on every view of `mode` and returns the averaged head output."""

    def __init__(self, backend: Backend, mode: str, imgsz: tuple[int, int], strides: list[int], num_classes: int):
        if mode not in MODES:
            raise BackendError(f"tta mode '{mode}' is unknown; use one of {', '.join(MODES)}")
        self.backend, self.mode = backend, mode
        self.h, self.w = imgsz
        self.rows = 4 + num_classes
        grids = anchor_grids(imgsz, strides)
        self.anchors = sum(r * c for r, c in grids)
        self.views = [(fx, fy, view_permutation(grids, fx, fy)) for fx, fy in MODES[mode]]
        self.name = f"{backend.name}+tta:{mode}"

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        total = None
        for flip_x, flip_y, perm in self.views:
            view = batch
            if flip_x:
                view = view[..., ::-1]
            if flip_y:
                view = view[..., ::-1, :]
            raw = np.asarray(self.backend.infer(np.ascontiguousarray(view))[0], np.float32)
            if raw.shape[-2:] != (self.rows, self.anchors):
                raise BackendError(f"model output shape {raw.shape} is not (1, {self.rows}, {self.anchors}) that "
                                   f"tta '{self.mode}' expects from the sidecar's imgsz and output.strides")
            out = raw[..., perm]  # a copy: the backend may reuse its output buffer for the next view
            if flip_x:
                out[..., 0, :] = self.w - out[..., 0, :]
            if flip_y:
                out[..., 1, :] = self.h - out[..., 1, :]
            total = out if total is None else np.add(total, out, out=total)
        total /= len(self.views)
        return [total]

    def close(self) -> None:
        self.backend.close()


def with_tta(backend: Backend, sidecar: Sidecar) -> Backend:
    """The backend as the sidecar says to run it: wrapped when it declares flip views, else as is."""
    if sidecar.tta == "none":
        return backend
    return FlipTTABackend(backend, sidecar.tta, tuple(sidecar.input.imgsz), list(sidecar.output.strides),
                          len(sidecar.classes))
