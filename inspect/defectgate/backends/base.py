"""The backend interface: one method. Framework types (ORT sessions, OpenVINO requests, TensorRT
contexts) never leave backends/; callers see numpy arrays in and out."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Backend(Protocol):
    name: str  # e.g. "onnxruntime:CPUExecutionProvider", "openvino:CPU", "tensorrt"

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        """Run the model on a preprocessed NCHW batch; return its raw outputs in sidecar order."""

    def close(self) -> None:
        """Release sessions, device buffers and threads."""
