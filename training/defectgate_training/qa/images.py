"""Reading images for the app: BGR for the model, RGB for the browser, size and sha256."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from defectgate.bundle import sha256_file as file_sha256  # noqa: F401  (re-exported: one hashing helper)
from defectgate.images import IMAGE_SUFFIXES, read_image  # noqa: F401  (the one list of image suffixes)

from .errors import QAError


def read_bgr(path: Path) -> np.ndarray:
    return read_image(path, QAError)


def bgr_to_rgb(img: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(img[..., ::-1])
