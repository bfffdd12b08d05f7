"""The one path image -> `Detections`: a bundle's sidecar says how (letterbox and normalisation, the
test-time views, the output layout, `max_det`, the NMS IoU), a Backend runs the network. The station,
`defectgate evaluate`, export's parity check, `defectgate parity`, the INT8 calibration metric and the
QA app's pre-labels all run images through a Detector, so what they measure is what the line runs;
nothing else calls `postprocess.decode`.

The threaded station runs the three stages in three threads (capture prepares frame n+1 while the
engine runs frame n): `prepare` (letterbox into one of `pool` reused buffers), `infer` (the backend,
with the sidecar's views around it), `decode` (the head -> Detections in source pixels, views fused).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .backends import Backend, load_backend
from .bundle import Bundle, Sidecar, load_bundle
from .postprocess import decode
from .preprocess import LetterboxInfo, Preprocessor
from .tta import with_tta
from .types import Detections


def lowest_threshold(sidecar: Sidecar) -> float:
    """The lowest confidence any class of the bundle rejects at: decoding need not go below it."""
    return min(sidecar.threshold_for(c) for c in sidecar.classes)


def in_graph_preprocess_fits(sidecar: Sidecar) -> bool:
    """Whether the engine may normalise the uint8 canvas itself (OpenVINO). Not for a bundle with
    shrunk views: those are resized from the normalised float input, as export calibrated them, and a
    uint8 canvas would round them to other values."""
    return sidecar.tta.scales == [1.0]


class Detector:
    """bundle + backend (+ the sidecar's test-time views) -> Detections.

    `backend`: an open engine for the bundle's model file (backends/, or a stand-in such as the
    training side's PyTorch backend); None opens `backend_name` with `threads` and
    `compute_precision` (load_backend). The Detector wraps it in the views the sidecar declares
    unless `views` is False (export's parity check compares bare networks) and owns it: `close()`
    releases it. `streams` (OpenVINO): parallel CPU streams, see `concurrency`. `prepare` hands out
    what the backend takes (`input_format`): the normalised NCHW float batch, or the letterboxed uint8
    canvas where the engine normalises in its graph. `conf_floor`: the confidence decode keeps down to (default: the bundle's lowest
    class threshold); `decode(..., conf=)` overrides it for one call. `pool`: how many frames may be
    prepared ahead of inference (each has its own input buffer)."""

    def __init__(self, bundle: Bundle, backend: Backend | None = None, *, backend_name: str = "auto",
                 threads: int = 0, compute_precision: str = "f32", conf_floor: float | None = None,
                 pool: int = 1, views: bool = True, streams: int = 1):
        self.bundle = bundle
        self.sidecar = side = bundle.sidecar
        self.classes: list[str] = list(side.classes)
        self.version: str = bundle.version
        if backend is None:
            backend = load_backend(bundle, backend_name, threads, compute_precision, streams,
                                   in_graph_preprocess=in_graph_preprocess_fits(side))
        self.input_format: str = getattr(backend, "input_format", "nchw")
        self.backend: Backend = with_tta(backend, side) if views else backend
        self.conf_floor = float(conf_floor) if conf_floor is not None else lowest_threshold(side)
        in_graph = self.input_format == "nhwc_u8"
        self._pool = [Preprocessor(side.input, in_graph) for _ in range(max(1, pool))]
        self._next = 0
        self._closed = False

    @classmethod
    def open(cls, path: str | Path, backend_name: str = "auto", **kw) -> "Detector":
        """load_bundle (sha256 and layout checked) + load_backend."""
        return cls(load_bundle(path), backend_name=backend_name, **kw)

    # ---- the three stages ----
    def prepare(self, image: np.ndarray) -> tuple[np.ndarray, LetterboxInfo]:
        """Letterbox + normalise into the next pooled buffer (valid until `pool` more frames are prepared)."""
        pre = self._pool[self._next]
        self._next = (self._next + 1) % len(self._pool)
        return pre(image)

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        return self.backend.infer(batch)

    @property
    def concurrency(self) -> int:
        """How many threads may call `infer` at once (OpenVINO streams; 1 for every other engine)."""
        return int(getattr(self.backend, "concurrency", 1))

    def decode(self, outputs: list[np.ndarray], info: LetterboxInfo, conf: float | None = None) -> Detections:
        """The raw outputs of one frame -> Detections in source pixels, at the sidecar's max_det and NMS
        IoU, the views fused (postprocess.decode)."""
        side = self.sidecar
        return decode(outputs[0], side.output, len(self.classes), info, self.conf_floor if conf is None else conf,
                      side.iou_threshold, side.output.max_det)

    # ---- whole images ----
    def detect(self, image: np.ndarray, conf: float | None = None) -> Detections:
        batch, info = self.prepare(image)
        return self.decode(self.infer(batch), info, conf)

    def __call__(self, images: Sequence[np.ndarray], conf: float | None = None) -> list[Detections]:
        return [self.detect(image, conf) for image in images]

    def warm_up(self) -> None:
        """One pass on a blank frame: the engine's lazy initialisation is paid now, not by the first
        part, and a model whose output does not fit its sidecar fails here, off the line."""
        h, w = self.sidecar.input.imgsz
        self.detect(np.zeros((h, w, 3), np.uint8))

    def close(self) -> None:
        """Release the backend (sessions, device buffers, threads). Idempotent."""
        if not self._closed:
            self._closed = True
            self.backend.close()

    def __repr__(self) -> str:
        return f"Detector({self.bundle!r}, {self.backend.name})"
