"""Turn reviewed items into a versioned YOLO dataset increment that `defectgate data validate`
checks and `defectgate data merge` / `make retrain` adds to the training data:

    <exports>/qa-v0003/
        images/train/<sha256[:16]>.<ext>   the archived bytes, unchanged
        labels/train/<sha256[:16]>.txt     boxes in the model's class order; empty = OK part
        images/val/ labels/val/            a hash-chosen share (val_fraction, default none), so the
                                           folder is a complete dataset that `data validate` accepts
        data.yaml                          absolute path, train and val splits, names
        manifest.json                      one entry per image: where it came from, who decided what

Images are deduplicated by sha256 within the increment and against every earlier increment in the
same exports folder, so exporting twice never adds an image twice. The increment is written into
a temp folder and renamed, so a crash never leaves half a dataset."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from .archive_reader import ArchiveReader
from .boxes import boxes_to_yolo_lines
from .decisions import Decision
from .errors import QAError
from .images import file_sha256, read_bgr
from .store import ReviewStore

FORMAT = "defectgate-qa-increment"
_VERSION_RE = re.compile(r"^qa-v(\d{4,})$")


@dataclass
class ExportResult:
    path: Path
    version: str
    images: int
    negatives: int
    boxes: int
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count
    manifest: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        skipped = ", ".join(f"{n} {why}" for why, n in self.skipped.items() if n) or "none"
        return (f"{self.version}: {self.images} images ({self.negatives} without defects, {self.boxes} boxes) "
                f"written to {self.path}; skipped: {skipped}")


def previous_hashes(out_root: Path) -> dict[str, str]:
    """sha256 -> increment version, over every earlier increment in `out_root`."""
    seen: dict[str, str] = {}
    if not out_root.is_dir():
        return seen
    for d in sorted(out_root.iterdir()):
        m = d / "manifest.json"
        if _VERSION_RE.match(d.name) and m.is_file():
            try:
                for item in json.loads(m.read_text()).get("items", []):
                    seen.setdefault(item["sha256"], d.name)
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise QAError(f"{m}: unreadable manifest of an earlier export ({exc}); fix or move that folder") from exc
    return seen


def next_version(out_root: Path) -> str:
    numbers = [int(m.group(1)) for d in (out_root.iterdir() if out_root.is_dir() else [])
               if (m := _VERSION_RE.match(d.name))]
    return f"qa-v{max(numbers, default=0) + 1:04d}"


def export_increment(archive: ArchiveReader, store: ReviewStore, classes: Sequence[str], out_root: str | Path,
                     exported_by: str = "", model_version: str = "", val_fraction: float = 0.0) -> ExportResult:
    """Write the next increment from every current review (and every saved folder label)."""
    if not 0.0 <= val_fraction < 1.0:
        raise QAError(f"val fraction {val_fraction} must be in [0, 1)")
    classes = list(classes)
    out_root = Path(out_root).resolve()
    out_root.mkdir(parents=True, exist_ok=True)
    seen = previous_hashes(out_root)
    version = next_version(out_root)
    final = out_root / version
    tmp = out_root / f".{version}.{os.getpid()}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    for split in ("train", "val"):
        (tmp / "images" / split).mkdir(parents=True)
        (tmp / "labels" / split).mkdir(parents=True)
    skipped = {"without image": 0, "already exported": 0, "duplicate image": 0}
    items: list[dict[str, Any]] = []
    in_this: set[str] = set()
    n_boxes = n_neg = 0

    def add(src: Path, boxes: list[dict[str, Any]], source: dict[str, Any]) -> None:
        nonlocal n_boxes, n_neg
        digest = file_sha256(src)
        if digest in seen:
            skipped["already exported"] += 1
            return
        if digest in in_this:
            skipped["duplicate image"] += 1
            return
        img = read_bgr(src)
        h, w = img.shape[:2]
        lines = boxes_to_yolo_lines(boxes, classes, w, h)
        stem = digest[:16]
        suffix = src.suffix.lower()
        # by hash, not by chance: the same image lands in the same split in every export
        split = "val" if int(digest[:8], 16) / 0xFFFFFFFF < val_fraction else "train"
        shutil.copyfile(src, tmp / "images" / split / f"{stem}{suffix}")
        (tmp / "labels" / split / f"{stem}.txt").write_text("".join(line + "\n" for line in lines))
        in_this.add(digest)
        n_boxes += len(lines)
        n_neg += not lines
        items.append({"image": f"images/{split}/{stem}{suffix}", "label": f"labels/{split}/{stem}.txt", "split": split,
                      "sha256": digest, "width": w, "height": h, "boxes": len(lines), **source})

    try:
        reviews = store.latest()
        for row_id in sorted(reviews):
            review = reviews[row_id]
            part = archive.get(row_id)
            if not (part.image_path or (part.shadow and part.shadow.image_path)):  # a disagreement may keep it there
                skipped["without image"] += 1
                continue
            src = archive.image_file(part)
            # a false reject or a correct pass is an OK part: an empty label file, a valuable negative
            boxes = review.boxes if review.decision.reviewer_ng else []
            add(src, boxes, {
                "source": {"kind": "archive", "archive": str(archive.root), "row_id": part.id, "run_id": part.run_id,
                           "station": part.station, "part_id": part.part_id,
                           "image_path": str(src.relative_to(archive.root)),
                           "line_verdict": part.verdict, "model_version": part.model_version},
                "decision": review.decision.value, "reviewer": review.reviewer, "reviewed_at": review.ts_utc})
        for label in store.latest_labels():
            src = Path(label.image)
            if not src.is_file():
                skipped["without image"] += 1
                continue
            add(src, label.boxes, {"source": {"kind": "folder", "path": str(src)}, "decision": "labeled",
                                   "reviewer": label.reviewer, "reviewed_at": label.ts_utc})
        if not items:
            why = ", ".join(f"{n} {k}" for k, n in skipped.items() if n) or "no reviews or labels saved yet"
            raise QAError(f"nothing to export to {out_root}: {why}; review parts or label images first")
        counts = {d.value: sum(1 for i in items if i["decision"] == d.value) for d in Decision}
        counts["labeled"] = sum(1 for i in items if i["decision"] == "labeled")
        manifest = {
            "format": FORMAT, "version": version,
            "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "exported_by": exported_by, "model_version": model_version, "classes": classes,
            "archive": str(archive.root), "reviews_db": str(store.path), "counts": counts,
            "skipped": skipped, "items": items,
        }
        data_yaml = {"path": str(final), "train": "images/train", "val": "images/val", "nc": len(classes),
                     "names": {i: n for i, n in enumerate(classes)}}
        (tmp / "data.yaml").write_text(yaml.safe_dump(data_yaml, sort_keys=False))
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ExportResult(final, version, len(items), n_neg, n_boxes, skipped, manifest)
