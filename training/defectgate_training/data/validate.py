"""`defectgate data validate DIR`: check a YOLO dataset before anything trains on it.

Errors (exit 2): data.yaml inconsistent, a split folder missing, no images, an image that does not
decode, a label line that is not 5 numbers, a class id data.yaml does not know, a box outside the
image, the same picture in two splits (it would leak between train and val).
Warnings (exit 0): the same picture twice within a split, duplicate label lines, label files
without an image, degenerate boxes under one pixel.
Info: images with an empty or missing label file: OK parts, legal and expected.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from defectgate.errors import DatasetError

from .layout import (
    IMAGE_SUFFIXES, DataSpec, Problem, file_sha256, label_path_for, list_split_images, load_data_yaml,
    parse_label_text,
)

REQUIRED_SPLITS = ("train", "val")  # ultralytics refuses a data.yaml without both


@dataclass
class Report:
    dataset: str
    classes: list[str]
    problems: list[Problem] = field(default_factory=list)
    images: Counter = field(default_factory=Counter)  # per split
    ok_images: int = 0
    boxes: int = 0

    def of(self, severity: str) -> list[Problem]:
        return [p for p in self.problems if p.severity == severity]

    @property
    def ok(self) -> bool:
        return not self.of("error")

    def to_dict(self) -> dict:
        return {
            "dataset": self.dataset, "classes": self.classes, "valid": self.ok,
            "images": dict(self.images), "ok_images": self.ok_images, "boxes": self.boxes,
            "errors": [str(p) for p in self.of("error")],
            "warnings": [str(p) for p in self.of("warning")],
            "info": [str(p) for p in self.of("info")],
        }


def _decode(path: Path) -> np.ndarray | None:
    try:
        data = np.fromfile(str(path), np.uint8)
    except OSError:
        return None
    if data.size == 0:
        return None
    return cv2.imdecode(data, cv2.IMREAD_UNCHANGED)


def validate(path: str | Path) -> Report:
    spec = load_data_yaml(path)  # a missing or malformed data.yaml is fatal: DatasetError
    rep = Report(str(spec.yaml_path.parent), spec.names)
    root = spec.yaml_path.parent

    def rel(p: Path) -> str:
        for base in (spec.root, root):
            try:
                return str(Path(p).relative_to(base))
            except ValueError:
                continue
        return str(p)

    def add(sev: str, p: Path | str, msg: str, line: int | None = None) -> None:
        rep.problems.append(Problem(sev, rel(Path(p)) if isinstance(p, Path) else p, line, msg))

    _check_yaml(spec, add)
    nc = len(spec.names)
    first_seen: dict[str, tuple[Path, str]] = {}  # sha256 -> (image, split)
    split_of: dict[Path, str] = {}
    for split in spec.splits:
        images = list_split_images(spec, split)
        label_dirs: set[Path] = set()
        for img in images:
            if img in split_of:
                add("error", img, f"listed in both splits '{split_of[img]}' and '{split}'")
                continue
            split_of[img] = split
            rep.images[split] += 1
            lbl = label_path_for(img)
            label_dirs.add(lbl.parent)
            pixels = _decode(img)
            if pixels is None:
                add("error", img, "cannot be decoded (corrupt, truncated or not an image); delete or replace it")
                continue
            h, w = pixels.shape[:2]
            digest = file_sha256(img)
            if digest in first_seen:
                other, other_split = first_seen[digest]
                if other_split != split:
                    add("error", img, f"same picture as {rel(other)} in split '{other_split}': it would leak "
                        f"between '{other_split}' and '{split}'; delete one copy")
                else:
                    add("warning", img, f"same picture as {rel(other)} (duplicate within '{split}')")
            else:
                first_seen[digest] = (img, split)
            if not lbl.is_file():
                add("info", img, "no label file: an OK part (no defects)")
                rep.ok_images += 1
                continue
            rows, problems = parse_label_text(lbl.read_text(errors="replace"), rel(lbl), nc)
            rep.problems += problems
            if not rows and not any(p.severity == "error" for p in problems):
                add("info", lbl, "empty label file: an OK part (no defects)")
                rep.ok_images += 1
            rep.boxes += len(rows)
            for r in rows:
                if r.w * w < 1 or r.h * h < 1:
                    add("warning", lbl, f"box of {r.w * w:.2f} x {r.h * h:.2f} px is smaller than a pixel")
        _orphan_labels(images, label_dirs, add)
    if not split_of:
        add("error", spec.yaml_path, "the dataset is empty: no images in any split "
            f"({', '.join(f'{k}: {[rel(p) for p in v]}' for k, v in spec.splits.items()) or 'no splits defined'})")
    return rep


def _check_yaml(spec: DataSpec, add) -> None:
    raw = spec.raw
    yml = spec.yaml_path
    if "nc" in raw and raw["nc"] != len(spec.names):
        add("error", yml, f"nc is {raw['nc']} but names lists {len(spec.names)} classes")
    dupes = [n for n, c in Counter(spec.names).items() if c > 1]
    if dupes:
        add("error", yml, f"class names repeat: {dupes}")
    if not spec.root.is_dir():
        add("error", yml, f"path: {raw.get('path')!r} resolves to {spec.root}, which does not exist")
    for split in REQUIRED_SPLITS:
        if split not in spec.splits:
            add("error", yml, f"split '{split}' is not defined (ultralytics needs both 'train' and 'val'); "
                "run 'defectgate data split'")
    for split, entries in spec.splits.items():
        for e in entries:
            if not e.exists():
                add("error", yml, f"split '{split}' points to {e}, which does not exist")


def _orphan_labels(images: list[Path], label_dirs: set[Path], add) -> None:
    have = {label_path_for(i) for i in images}
    for d in sorted(label_dirs):
        if not d.is_dir():
            continue
        for lbl in sorted(d.glob("*.txt")):
            if lbl not in have and lbl.name != "classes.txt":
                add("warning", lbl, "label file without an image (ignored by training)")


def format_report(rep: Report, show_info: int = 5, limit: int = 200) -> str:
    lines: list[str] = []
    shown = rep.of("error") + rep.of("warning")
    for p in shown[:limit]:
        lines.append(str(p))
    if len(shown) > limit:
        lines.append(f"... and {len(shown) - limit} more errors/warnings (use --json for all)")
    infos = rep.of("info")
    for p in infos[:show_info]:
        lines.append(str(p))
    if len(infos) > show_info:
        lines.append(f"INFO    ... and {len(infos) - show_info} more OK parts without boxes")
    per_split = ", ".join(f"{k} {v}" for k, v in rep.images.items()) or "none"
    verdict = "valid" if rep.ok else "INVALID"
    lines.append(
        f"{rep.dataset}: {verdict}: {sum(rep.images.values())} images ({per_split}), {rep.boxes} boxes, "
        f"{rep.ok_images} OK parts, {len(rep.of('error'))} errors, {len(rep.of('warning'))} warnings"
    )
    return "\n".join(lines)


def require_valid(path: str | Path) -> Report:
    """For other tools: raise DatasetError with the first error when the dataset is invalid."""
    rep = validate(path)
    errors = rep.of("error")
    if errors:
        raise DatasetError(f"{rep.dataset} is not a valid dataset: {errors[0]} "
                           f"({len(errors)} errors; run 'defectgate data validate {rep.dataset}')")
    return rep


__all__ = ["validate", "Report", "format_report", "require_valid", "IMAGE_SUFFIXES"]
