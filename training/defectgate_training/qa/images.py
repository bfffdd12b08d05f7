"""Reading images for the app: BGR for the model, RGB for the browser, size and sha256."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from defectgate.bundle import sha256_file as file_sha256  # noqa: F401  (re-exported: one hashing helper)

from .errors import QAError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def read_bgr(path: Path) -> np.ndarray:
    data = np.fromfile(str(path), np.uint8) if Path(path).is_file() else None
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data is not None and data.size else None
    if img is None:
        raise QAError(f"{path}: not a readable image (missing, empty or not JPEG/PNG/BMP/TIFF/WebP)")
    return img


def bgr_to_rgb(img: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(img[..., ::-1])
