"""The backend interface: one method. Framework types (ORT sessions, OpenVINO requests, TensorRT
contexts) never leave backends/; callers see numpy arrays in and out.

Every engine counts itself open when it has started and closed in `close()`, so that a leak (a model
swapped out but never released) shows as a number: `open_engines()`."""

from __future__ import annotations

import threading
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Backend(Protocol):
    name: str  # e.g. "onnxruntime:CPUExecutionProvider", "openvino:CPU", "tensorrt"

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        """Run the model on a preprocessed NCHW batch; return its raw outputs in sidecar order."""

    def close(self) -> None:
        """Release sessions, device buffers and threads."""


_count_lock = threading.Lock()
_open_count = 0


def engine_opened(engine: object) -> None:
    """Called by an engine once it is ready to infer."""
    global _open_count
    with _count_lock:
        if not getattr(engine, "_counted_open", False):
            engine._counted_open = True  # type: ignore[attr-defined]
            _open_count += 1


def engine_closed(engine: object) -> None:
    """Called by an engine's close(); a second close does not count twice."""
    global _open_count
    with _count_lock:
        if getattr(engine, "_counted_open", False):
            engine._counted_open = False  # type: ignore[attr-defined]
            _open_count -= 1


def open_engines() -> int:
    """Engines started in this process and not closed yet (garbage-collected ones included: a
    dropped engine that was never closed still counts, which is the point)."""
    with _count_lock:
        return _open_count
