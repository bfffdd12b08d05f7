"""Image files, one helper each: which suffixes are images, listing a folder's images, where an
image's YOLO label file is, reading one with an error that names the file, and the one rule for
picking a sample of them (INT8 calibration sets: TensorRT, OpenVINO and ONNX Runtime alike)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence, TypeVar

import cv2
import numpy as np

from .errors import DatasetError, DefectgateError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
T = TypeVar("T")


def is_image(path: Path) -> bool:
    """By suffix, case-insensitive (what OpenCV can decode and the dataset tools accept)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def list_images(folder: str | Path, recursive: bool = True) -> list[Path]:
    """The image files in `folder` (and below it when `recursive`), sorted by path."""
    folder = Path(folder)
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if is_image(p) and p.is_file())


def label_path_for(image: Path) -> Path:
    """ultralytics' rule: the last '/images/' in the path becomes '/labels/', suffix becomes .txt
    (images/val/a.png -> labels/val/a.txt)."""
    s = str(image)
    sep_img, sep_lbl = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    if sep_img in s:
        head, tail = s.rsplit(sep_img, 1)
        s = head + sep_lbl + tail
    return Path(s).with_suffix(".txt")


def read_image(path: str | Path, error: type[DefectgateError] = DatasetError) -> np.ndarray:
    """An image file as an HxWx3 uint8 BGR array (grey files are replicated to 3 channels, as the
    camera frames and training saw them), or `error` naming the file: OpenCV returns None, not an error."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None or img.size == 0:
        raise error(f"{path}: image cannot be read (missing, corrupt or not an image); fix or remove it")
    return img


def evenly_spaced(items: Sequence[T], limit: int) -> list[T]:
    """The sampling rule for calibration sets: at most `limit` items spread evenly over `items` from
    the first to the last (np.linspace positions, rounded), all of them when there are no more than
    `limit` (or `limit` is 0). Why spread, not the first N: a folder sorted by name is often sorted by
    time, class or camera session, and the calibration must see the whole range."""
    items = list(items)
    if not limit or len(items) <= limit:
        return items
    idx = np.linspace(0, len(items) - 1, limit).round().astype(int)
    return [items[i] for i in idx]
