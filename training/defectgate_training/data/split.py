"""Seeded, class-stratified train/val/test split.

Each image is put in a stratum by its rarest class (images without boxes, the OK parts, form their
own stratum), so rare defect classes and OK parts reach every split in proportion. Within a
stratum the order is a seeded shuffle; split sizes use cumulative rounding across strata so the
totals match the requested fractions. Every image lands in exactly one split.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from defectgate.errors import DatasetError

from .layout import (
    IMAGE_SUFFIXES, Entry, Item, LabelRow, file_sha256, label_path_for, list_dataset, load_data_yaml,
    read_label_rows, unique_name, write_dataset,
)

OK_STRATUM = -1


def check_fractions(val: float, test: float) -> None:
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise DatasetError(f"split fractions --val {val} --test {test}: each must be in 0..1 and together below 1")


def assign_splits(class_sets: list[set[int]], val: float, test: float = 0.0, seed: int = 0) -> list[str]:
    """Return 'train' / 'val' / 'test' for each image, stratified by its rarest class."""
    check_fractions(val, test)
    freq = Counter(c for cs in class_sets for c in cs)
    strata: dict[int, list[int]] = {}
    for i, cs in enumerate(class_sets):
        key = min(cs, key=lambda c: (freq[c], c)) if cs else OK_STRATUM
        strata.setdefault(key, []).append(i)
    rng = np.random.default_rng(seed)
    out = ["train"] * len(class_sets)
    want_val = want_test = 0.0
    got_val = got_test = 0
    for key in sorted(strata):
        idx = strata[key]
        order = [idx[j] for j in rng.permutation(len(idx))]
        want_val += len(idx) * val
        want_test += len(idx) * test
        n_val = int(np.floor(want_val + 0.5)) - got_val
        n_test = int(np.floor(want_test + 0.5)) - got_test
        n_val, n_test = max(0, min(n_val, len(idx))), max(0, min(n_test, len(idx) - max(0, n_val)))
        for j in order[:n_test]:
            out[j] = "test"
        for j in order[n_test:n_test + n_val]:
            out[j] = "val"
        got_val += n_val
        got_test += n_test
    return out


def _flat_items(folder: Path, names: list[str]) -> list[Item]:
    """An images folder without splits: `folder/images/*` (labels in `folder/labels/`) or
    images and .txt labels side by side in `folder`."""
    img_dir = folder / "images" if (folder / "images").is_dir() else folder
    images = sorted(p for p in img_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    items = []
    for img in images:
        lbl = label_path_for(img)
        if not lbl.is_file():
            lbl = img.with_suffix(".txt")
        items.append(Item(img, "", read_label_rows(lbl, len(names))))
    return items


def load_pool(src: Path, classes: list[str] | None) -> tuple[list[str], list[Item], Path | None]:
    """All images of a dataset (any splits) or of a flat images folder, with their class names."""
    src = Path(src)
    if not src.is_dir():
        raise DatasetError(f"{src}: not a folder; give a YOLO dataset folder or a folder of images and labels")
    if (src / "data.yaml").is_file():
        spec = load_data_yaml(src / "data.yaml")
        if classes and classes != spec.names:
            raise DatasetError(f"{spec.yaml_path}: names {spec.names} differ from --classes {classes}")
        return spec.names, list_dataset(spec), spec.yaml_path
    if classes is None and (src / "classes.txt").is_file():
        classes = [n for n in (src / "classes.txt").read_text().split() if n]
    if not classes:
        raise DatasetError(f"{src}: no data.yaml or classes.txt; pass --classes name1,name2,... (class id order)")
    items = _flat_items(src, classes)
    if not items:
        raise DatasetError(f"{src}: no images found (looked in {src}/images and {src})")
    return classes, items, None


def split_dataset(src: Path, dst: Path | None, val: float, test: float, seed: int,
                  classes: list[str] | None = None, overwrite: bool = False) -> dict:
    """Re-split every image of `src` into a new dataset at `dst` (default: replace `src`)."""
    check_fractions(val, test)
    names, items, yaml_path = load_pool(src, classes)
    # the same picture twice would land in two splits and leak: keep the first copy
    seen: dict[str, Path] = {}
    unique: list[Item] = []
    dropped = 0
    for it in items:
        h = file_sha256(it.image)
        if h in seen:
            dropped += 1
            continue
        seen[h] = it.image
        unique.append(it)
    splits = assign_splits([it.classes for it in unique], val, test, seed)
    taken: dict[str, set[str]] = {}
    entries = [Entry(s, unique_name(it.image.stem, it.image.suffix.lower(), taken.setdefault(s, set())),
                     list(it.rows), source=it.image) for it, s in zip(unique, splits)]
    in_place = dst is None or Path(dst).absolute() == Path(src).absolute()
    manifest = {"tool": "defectgate data split", "source": str(Path(src).absolute()), "seed": seed,
                "fractions": {"val": val, "test": test}, "duplicates_dropped": dropped}
    parent = Path(src) / "manifest.json"
    if parent.is_file():
        try:
            manifest["parent"] = json.loads(parent.read_text())
        except json.JSONDecodeError:
            pass  # an unreadable old manifest is not worth failing the split for
    # an in-place split replaces the folder: keep its loose documents (README, licence)
    extras = [f for f in Path(src).iterdir() if f.is_file() and f.name not in ("data.yaml", "manifest.json")
              and f.suffix.lower() not in IMAGE_SUFFIXES | {".txt", ".cache"}] if in_place else []
    return write_dataset(Path(src) if in_place else Path(dst), names, entries, manifest,
                         overwrite=overwrite or in_place, extra_files=extras)


__all__ = ["assign_splits", "split_dataset", "load_pool", "check_fractions", "LabelRow"]
