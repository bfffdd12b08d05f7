"""The on-disk YOLO dataset: list its images per split, parse label files into rows or
problems, write data.yaml/manifest.json, and build a new dataset atomically (temp folder + rename)."""

from __future__ import annotations

import json
import math
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import yaml

from defectgate import staging
from defectgate.errors import DatasetError

from ..datayaml import IMAGE_SUFFIXES, DataSpec, label_path_for, load_data_yaml
from defectgate.bundle import sha256_file as file_sha256  # one hashing helper for bundles and images

__all__ = [
    "IMAGE_SUFFIXES", "DataSpec", "label_path_for", "load_data_yaml", "Problem", "LabelRow",
    "parse_label_text", "read_label_rows", "list_split_images", "list_dataset", "Item",
    "staged_dir", "write_data_yaml", "write_manifest", "write_label_file", "file_sha256",
    "unique_name", "class_names_from_arg",
]

# Normalised coordinates may overshoot [0, 1] by rounding in exporters; ultralytics clips these.
COORD_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Problem:
    severity: str  # "error" (exit 2), "warning" (printed, exit 0), "info" (counted)
    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{self.severity.upper():7} {where}: {self.message}"


@dataclass(frozen=True)
class LabelRow:
    cls: int
    cx: float
    cy: float
    w: float
    h: float

    def line(self) -> str:
        return f"{self.cls} {self.cx:.6f} {self.cy:.6f} {self.w:.6f} {self.h:.6f}"


def parse_label_text(text: str, file: str, nc: int) -> tuple[list[LabelRow], list[Problem]]:
    """Parse a YOLO label file. Each bad line becomes an error naming file and line; the
    good lines are returned so callers can report everything at once."""
    rows: list[LabelRow] = []
    problems: list[Problem] = []
    seen: set[str] = set()
    for lineno, raw in enumerate(text.splitlines(), 1):
        parts = raw.split()
        if not parts:
            continue
        def err(msg: str) -> None:
            problems.append(Problem("error", file, lineno, msg))
        if len(parts) != 5:
            err(f"expected 5 numbers 'class cx cy w h', got {len(parts)} values: {raw.strip()[:60]!r}")
            continue
        try:
            values = [float(v) for v in parts]
        except ValueError:
            err(f"not numbers: {raw.strip()[:60]!r}")
            continue
        if not all(math.isfinite(v) for v in values):
            err(f"NaN or infinite value: {raw.strip()!r}")
            continue
        c, cx, cy, w, h = values
        if c != int(c) or c < 0:
            err(f"class id {parts[0]} is not a non-negative integer")
            continue
        if int(c) >= nc:
            err(f"class id {int(c)} is unknown: data.yaml has {nc} classes (0..{nc - 1})")
            continue
        bad = [n for n, v in (("cx", cx), ("cy", cy), ("w", w), ("h", h))
               if not -COORD_TOLERANCE <= v <= 1 + COORD_TOLERANCE]
        if bad:
            err(f"{', '.join(bad)} out of range 0..1 (normalised coordinates expected): {raw.strip()!r}")
            continue
        if w <= 0 or h <= 0:
            err(f"box has zero width or height: {raw.strip()!r}")
            continue
        t = COORD_TOLERANCE
        if cx - w / 2 < -t or cy - h / 2 < -t or cx + w / 2 > 1 + t or cy + h / 2 > 1 + t:
            err(f"box reaches outside the image (x {cx - w / 2:.4f}..{cx + w / 2:.4f}, "
                f"y {cy - h / 2:.4f}..{cy + h / 2:.4f}): {raw.strip()!r}")
            continue
        key = " ".join(parts)
        if key in seen:
            problems.append(Problem("warning", file, lineno, "duplicate of an earlier line"))
            continue
        seen.add(key)
        rows.append(LabelRow(int(c), cx, cy, w, h))
    return rows, problems


def read_label_rows(path: Path, nc: int) -> list[LabelRow]:
    """Strict read for tools that copy labels: the first bad line stops with a DatasetError."""
    if not path.is_file():
        return []
    rows, problems = parse_label_text(path.read_text(errors="replace"), str(path), nc)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        more = f" (and {len(errors) - 1} more; run 'defectgate data validate')" if len(errors) > 1 else ""
        raise DatasetError(f"{errors[0].file}:{errors[0].line}: {errors[0].message}{more}")
    return rows


def list_split_images(spec: DataSpec, split: str) -> list[Path]:
    """Images of one split; a split folder that does not exist yields no images (callers report it)."""
    images: list[Path] = []
    for entry in spec.splits.get(split, []):
        if entry.is_dir():
            images += [p for p in entry.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        elif entry.is_file() and entry.suffix == ".txt":
            for line in entry.read_text().splitlines():
                if line.strip():
                    p = Path(line.strip())
                    images.append(p if p.is_absolute() else spec.root / p)
    return sorted(set(images))


@dataclass
class Item:
    """One image of a dataset with its labels (already parsed strictly)."""

    image: Path
    split: str
    rows: list[LabelRow] = field(default_factory=list)

    @property
    def classes(self) -> set[int]:
        return {r.cls for r in self.rows}


def list_dataset(spec: DataSpec) -> list[Item]:
    """Every image of every split with strictly parsed labels; an image listed by two splits
    keeps the first (train, val, test order)."""
    items: list[Item] = []
    seen: set[Path] = set()
    for split in spec.splits:
        for img in list_split_images(spec, split):
            if img in seen:
                continue
            seen.add(img)
            items.append(Item(img, split, read_label_rows(label_path_for(img), len(spec.names))))
    if not items:
        raise DatasetError(f"{spec.yaml_path}: the dataset has no images (splits: "
                           f"{ {k: [str(p) for p in v] for k, v in spec.splits.items()} })")
    return items


def unique_name(stem: str, suffix: str, taken: set[str]) -> str:
    """`stem+suffix`, or `stem_2+suffix`... when the stem is taken (a.png and a.jpg would share
    the label file a.txt, so uniqueness is by stem)."""
    candidate, n = stem, 1
    while candidate.lower() in taken:
        n += 1
        candidate = f"{stem}_{n}"
    taken.add(candidate.lower())
    return candidate + suffix


def class_names_from_arg(value: str | None) -> list[str] | None:
    """`--classes a,b,c` or `--classes path/to/classes.txt` (one name per line)."""
    if not value:
        return None
    p = Path(value)
    names = p.read_text().split() if p.is_file() else [n.strip() for n in value.split(",")]
    names = [n for n in names if n]
    if not names or len(set(names)) != len(names):
        raise DatasetError(f"--classes {value!r}: give distinct class names, comma-separated or one per line in a file")
    return names


@contextmanager
def staged_dir(final: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temp folder next to `final`; on success it is renamed to `final`, on any
    error it is deleted, so a dataset is never half-written."""
    final = Path(final).absolute()
    if final.exists() and not final.is_dir():
        raise DatasetError(f"{final} exists and is not a folder; choose another output")
    if final.exists() and any(final.iterdir()) and not overwrite:
        raise DatasetError(f"{final} already exists and is not empty; choose another output or pass --overwrite")
    with staging.staged_dir(final) as tmp:
        yield tmp


def write_data_yaml(staging: Path, final: Path, names: list[str], splits: list[str],
                    elsewhere: dict[str, list[str]] | None = None) -> Path:
    """data.yaml with an ABSOLUTE `path:` (the final location): ultralytics resolves a relative
    one against its global datasets dir, not the yaml's folder. `splits` are folders of this dataset
    (images/<split>); `elsewhere` names splits that stay where another dataset has them."""
    data: dict = {"path": str(Path(final).absolute())}
    for s in splits:
        data[s] = f"images/{s}"
    for s, entries in (elsewhere or {}).items():
        data[s] = [str(e) for e in entries]
    data["nc"] = len(names)
    data["names"] = {i: n for i, n in enumerate(names)}
    out = staging / "data.yaml"
    out.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return out


def write_manifest(staging: Path, manifest: dict) -> Path:
    out = staging / "manifest.json"
    out.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return out


def write_label_file(path: Path, rows: list[LabelRow]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(r.line() + "\n" for r in rows))


@dataclass
class Entry:
    """One image of a dataset being written: copied from `source` or encoded from `pixels`."""

    split: str
    name: str  # file name inside images/<split>/, unique per split
    rows: list[LabelRow]
    source: Path | None = None
    pixels: object = None  # np.ndarray BGR when the image is generated
    move: bool = False  # source is a scratch file of ours: rename instead of copying


SPLIT_ORDER = ("train", "val", "test")


def summarize(entries: list[Entry], names: list[str]) -> dict:
    """Counts for manifest.json: images / OK / NG per split, boxes per class."""
    per_split: dict[str, dict] = {}
    boxes = {n: 0 for n in names}
    for e in entries:
        s = per_split.setdefault(e.split, {"images": 0, "ok": 0, "ng": 0, "boxes": 0})
        s["images"] += 1
        s["ng" if e.rows else "ok"] += 1
        s["boxes"] += len(e.rows)
        for r in e.rows:
            boxes[names[r.cls]] += 1
    ordered = {k: per_split[k] for k in sorted(per_split, key=lambda k: (SPLIT_ORDER + (k,)).index(k))}
    return {"splits": ordered, "boxes_per_class": boxes}


def write_dataset(final: Path, names: list[str], entries: list[Entry], manifest: dict,
                  overwrite: bool = False, extra_files: list[Path] = ()) -> dict:
    """Write a complete YOLO dataset atomically and return the manifest written. `extra_files`
    (a README, a licence) are copied to the top level as they are."""
    import cv2  # lazy: only writers of generated pixels need it

    if not entries:
        raise DatasetError(f"{final}: nothing to write, the dataset would be empty")
    splits = sorted({e.split for e in entries}, key=lambda k: (SPLIT_ORDER + (k,)).index(k))
    final = Path(final).absolute()
    with staged_dir(final, overwrite) as tmp:
        for e in entries:
            img_dst = tmp / "images" / e.split / e.name
            img_dst.parent.mkdir(parents=True, exist_ok=True)
            if e.source is not None and e.move:
                shutil.move(e.source, img_dst)
            elif e.source is not None:
                shutil.copyfile(e.source, img_dst)
            elif not cv2.imwrite(str(img_dst), e.pixels, [cv2.IMWRITE_PNG_COMPRESSION, 1]):
                raise DatasetError(f"{img_dst}: could not write image")
            write_label_file(tmp / "labels" / e.split / (Path(e.name).stem + ".txt"), e.rows)
        for f in extra_files:
            shutil.copyfile(f, tmp / f.name)
        write_data_yaml(tmp, final, names, splits)
        manifest = {**manifest, "classes": list(names), **summarize(entries, names)}
        write_manifest(tmp, manifest)
    return manifest
