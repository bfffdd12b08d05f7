"""Read an ultralytics-style dataset (data.yaml + images/ + labels/) for evaluation, export and
fingerprinting, without importing ultralytics. Errors name the file (and line) that is wrong."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from defectgate.errors import DatasetError
from defectgate.images import IMAGE_SUFFIXES, label_path_for, read_image  # noqa: F401  (the one list, rule, reader)
from defectgate.staging import write_text_atomic


@dataclass
class DataSpec:
    yaml_path: Path
    root: Path
    names: list[str]
    splits: dict[str, list[Path]] = field(default_factory=dict)  # split -> image dirs or list files
    raw: dict = field(default_factory=dict)


def load_data_yaml(path: str | Path) -> DataSpec:
    path = Path(path)
    if path.is_dir():
        path = path / "data.yaml"
    if not path.is_file():
        raise DatasetError(f"{path}: dataset yaml not found; pass the data.yaml of a YOLO dataset "
                           "(make one with 'defectgate data synth' or 'defectgate data import')")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise DatasetError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(raw, dict) or "names" not in raw:
        raise DatasetError(f"{path}: key 'names' is missing; a dataset yaml lists its class names")
    names = raw["names"]
    if isinstance(names, dict):
        try:
            names = [names[i] for i in sorted(int(k) for k in names)]
        except (KeyError, ValueError) as exc:
            raise DatasetError(f"{path}: key 'names' must map 0..N-1 to class names") from exc
    names = [str(n) for n in names]
    if not names:
        raise DatasetError(f"{path}: key 'names' is empty")
    # A relative `path:` is taken relative to the yaml's folder (ultralytics would resolve it against
    # its global datasets dir, which is surprising and machine-dependent).
    root = Path(raw.get("path") or ".")
    if not root.is_absolute():
        root = (path.parent / root).resolve()
    splits: dict[str, list[Path]] = {}
    for split in ("train", "val", "test"):
        entry = raw.get(split)
        if not entry:
            continue
        items = entry if isinstance(entry, list) else [entry]
        splits[split] = [p if p.is_absolute() else root / p for p in (Path(str(i)) for i in items)]
    return DataSpec(path.resolve(), root, names, splits, raw)


def resolved_yaml(spec: DataSpec, dst: Path) -> Path:
    """Write a copy of the dataset yaml with an absolute `path` (what ultralytics needs). Atomic."""
    data = dict(spec.raw)
    data["path"] = str(spec.root)
    data["names"] = {i: n for i, n in enumerate(spec.names)}
    return write_text_atomic(dst, yaml.safe_dump(data, sort_keys=False))


def split_images(spec: DataSpec, split: str) -> list[Path]:
    if split not in spec.splits:
        raise DatasetError(f"{spec.yaml_path}: split '{split}' is not defined (have {sorted(spec.splits)})")
    images: list[Path] = []
    for entry in spec.splits[split]:
        if entry.is_dir():
            images += [p for p in entry.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES]
        elif entry.is_file() and entry.suffix == ".txt":
            for line in entry.read_text().splitlines():
                if line.strip():
                    p = Path(line.strip())
                    images.append(p if p.is_absolute() else spec.root / p)
        else:
            raise DatasetError(f"{spec.yaml_path}: split '{split}' points to {entry}, which does not exist")
    if not images:
        raise DatasetError(f"{spec.yaml_path}: split '{split}' has no images under {spec.splits[split]}")
    return sorted(images)


def read_labels(label: Path, width: int, height: int, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """YOLO label file -> (xyxy pixels (N,4) float32, class ids (N,) int64). Missing file = no defects."""
    if not label.is_file():
        return np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
    boxes, classes = [], []
    for lineno, line in enumerate(label.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 5:
            raise DatasetError(f"{label}:{lineno}: expected 'class cx cy w h', got {line!r}")
        try:
            c = int(parts[0])
            cx, cy, w, h = (float(v) for v in parts[1:])
        except ValueError as exc:
            raise DatasetError(f"{label}:{lineno}: not numbers: {line!r}") from exc
        if not 0 <= c < num_classes:
            raise DatasetError(f"{label}:{lineno}: class id {c} is outside 0..{num_classes - 1} of the dataset yaml")
        boxes.append([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height])
        classes.append(c)
    if not boxes:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
    return np.asarray(boxes, np.float32), np.asarray(classes, np.int64)


def fingerprint(spec: DataSpec, splits: tuple[str, ...] = ("train", "val")) -> dict:
    """sha256 over every image's bytes and label text (by relative path), so a model records
    exactly which data trained it."""
    h = hashlib.sha256()
    counts = {}
    for split in splits:
        if split not in spec.splits:
            continue
        images = split_images(spec, split)
        counts[split] = len(images)
        for img in images:
            h.update(f"{split}/{img.name}".encode())
            h.update(hashlib.sha256(img.read_bytes()).digest())
            lbl = label_path_for(img)
            h.update(lbl.read_bytes() if lbl.is_file() else b"-")
    h.update("\n".join(spec.names).encode())
    return {"sha256": h.hexdigest(), "images": counts, "classes": spec.names, "yaml": str(spec.yaml_path)}
