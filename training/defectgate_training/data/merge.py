"""`defectgate data merge BASE INCREMENT... --out DST`: fold labelled increments (for instance the
QA app's exports: YOLO images/labels + data.yaml + manifest.json) into the training dataset.

- Class lists must hold the same names. The same names in another order are remapped by name;
  any other difference stops the merge with both lists in the message.
- Images are deduplicated by content hash. A picture that appears again keeps the split it had
  first (so a val image never moves into train) and takes the labels of the LAST source that has
  it: a later increment is a later, reviewed correction.
- Splits other than train/val/test in an increment go to train.
"""

from __future__ import annotations

import json
from pathlib import Path

from defectgate.errors import DatasetError

from .layout import Entry, LabelRow, file_sha256, list_dataset, load_data_yaml, unique_name, write_dataset

SPLITS = ("train", "val", "test")


def merge_datasets(base: Path, increments: list[Path], out: Path, overwrite: bool = False) -> dict:
    if not increments:
        raise DatasetError("merge needs a base dataset and at least one increment")
    sources = [Path(base)] + [Path(p) for p in increments]
    specs = [load_data_yaml(p) for p in sources]
    names = specs[0].names
    by_hash: dict[str, dict] = {}
    order: list[str] = []
    provenance = []
    for spec in specs:
        remap = _class_remap(specs[0], spec)
        items = list_dataset(spec)
        added = relabelled = 0
        for it in items:
            rows = [LabelRow(remap[r.cls], r.cx, r.cy, r.w, r.h) for r in it.rows]
            h = file_sha256(it.image)
            if h in by_hash:
                by_hash[h]["rows"] = rows
                relabelled += 1
            else:
                split = it.split if it.split in SPLITS else "train"
                by_hash[h] = {"image": it.image, "split": split, "rows": rows}
                order.append(h)
                added += 1
        man = spec.yaml_path.parent / "manifest.json"
        try:
            source_manifest = json.loads(man.read_text()) if man.is_file() else None
        except json.JSONDecodeError:
            source_manifest = None
        provenance.append({"dataset": str(spec.yaml_path.parent), "images": len(items), "added": added,
                           "already_present": relabelled, "manifest": source_manifest})
    taken: dict[str, set[str]] = {}
    entries = []
    for h in order:
        rec = by_hash[h]
        img: Path = rec["image"]
        name = unique_name(img.stem, img.suffix.lower(), taken.setdefault(rec["split"], set()))
        entries.append(Entry(rec["split"], name, rec["rows"], source=img))
    manifest = {"tool": "defectgate data merge", "sources": provenance}
    return write_dataset(Path(out), names, entries, manifest, overwrite)


def _class_remap(base, other) -> list[int]:
    if other.names == base.names:
        return list(range(len(base.names)))
    if sorted(other.names) == sorted(base.names):
        return [base.names.index(n) for n in other.names]
    missing = [n for n in other.names if n not in base.names]
    absent = [n for n in base.names if n not in other.names]
    raise DatasetError(
        f"{other.yaml_path}: class list {other.names} does not match {base.yaml_path}'s {base.names} "
        f"(unknown to the base: {missing or 'none'}; missing here: {absent or 'none'}); "
        "export the increment with the base dataset's classes"
    )
