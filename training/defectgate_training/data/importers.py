"""`defectgate data import --format voc|coco|yolo SRC DST`: bring labelled images from other
tools into a YOLO dataset.

- voc:  Pascal VOC XML files anywhere under SRC (1-based pixel boxes, converted as edges
        xmin-1..xmax); images found by file name (any extension) under SRC. Splits from
        `ImageSets/Main/{train,val,test}.txt` or from a train/val/test folder holding the XML.
- coco: a COCO JSON file, or every COCO JSON under SRC (split from its name: instances_train.json);
        `bbox` is [x, y, w, h] in pixels; crowd annotations are skipped; images without
        annotations become OK parts.
- yolo: a YOLO dataset (data.yaml) or a flat folder of images + .txt labels with classes.txt.

The class list comes from the source (VOC: sorted names found; COCO: categories by id; YOLO:
data.yaml) unless `--classes` fixes it; a source class not in `--classes` is an error. A source
without splits is split by `split.assign_splits` (stratified, seeded). Everything is read and
checked first (images decode, boxes inside the image) and only then written, atomically.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from defectgate.errors import DatasetError

from .layout import IMAGE_SUFFIXES, Entry, LabelRow, unique_name, write_dataset
from .split import assign_splits, check_fractions, load_pool

FORMATS = ("voc", "coco", "yolo")
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                 "test": "test", "testing": "test"}
# boxes may overshoot the image by rounding in labelling tools; more than this is an error
EDGE_SLACK_PX = 2.0


@dataclass
class Record:
    image: Path
    split: str | None
    boxes: list[tuple[str, float, float, float, float]]  # (class name, x0, y0, x1, y1) pixels, edges
    size: tuple[int, int] | None  # (width, height) when the annotation states it
    origin: str  # the annotation file (and position) to name in messages


def _image_index(root: Path) -> dict[str, list[Path]]:
    index: dict[str, list[Path]] = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
            index.setdefault(p.stem.lower(), []).append(p)
    return index


def _find_image(index: dict[str, list[Path]], name: str, hint_dirs: list[str], origin: str) -> Path:
    cands = index.get(Path(name).stem.lower(), [])
    if not cands:
        raise DatasetError(f"{origin}: image '{name}' not found under the source folder (matched by file name, any extension)")
    if len(cands) == 1:
        return cands[0]
    exact = [c for c in cands if c.name.lower() == Path(name).name.lower()]
    for hint in hint_dirs:
        near = [c for c in (exact or cands) if hint and hint.lower() in (x.lower() for x in c.parts)]
        if len(near) == 1:
            return near[0]
    if len(exact) == 1:
        return exact[0]
    raise DatasetError(f"{origin}: image '{name}' is ambiguous, it matches {[str(c) for c in cands[:4]]}")


def _split_name(name: str) -> str | None:
    return SPLIT_ALIASES.get(name.lower())


def _split_from_file_name(stem: str) -> str | None:
    """instances_train2017 -> train, val.json -> val, coco_test-dev -> test, export -> None."""
    m = re.search(r"(?<![a-z])(train|val|test)", stem.lower())
    return _split_name(m.group(1)) if m else None


# ------------------------------------------------------------------------------------------ VOC
def _voc_image_sets(src: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for sets in src.rglob("ImageSets"):
        main = sets / "Main"
        for split in ("train", "val", "test"):
            f = main / f"{split}.txt"
            if f.is_file():
                for line in f.read_text().split("\n"):
                    if line.strip():
                        found[line.split()[0].lower()] = split
    return found


def read_voc(src: Path) -> list[Record]:
    xmls = sorted(p for p in src.rglob("*.xml") if p.is_file())
    if not xmls:
        raise DatasetError(f"{src}: no Pascal VOC .xml files found")
    index = _image_index(src)
    sets = _voc_image_sets(src)
    records = []
    for xml in xmls:
        try:
            root = ET.parse(xml).getroot()
        except ET.ParseError as exc:
            line = exc.position[0] if exc.position else "?"
            raise DatasetError(f"{xml}:{line}: not valid XML ({exc})") from exc
        if root.tag != "annotation":
            raise DatasetError(f"{xml}: root element is <{root.tag}>, a Pascal VOC file has <annotation>")
        filename = (root.findtext("filename") or xml.stem).strip()
        split = sets.get(Path(filename).stem.lower()) or _split_name(xml.parent.name)
        image = _find_image(index, filename, [xml.parent.name], str(xml))
        size = None
        try:
            w, h = int(float(root.findtext("size/width") or 0)), int(float(root.findtext("size/height") or 0))
            size = (w, h) if w > 0 and h > 0 else None
        except ValueError:
            size = None
        boxes = []
        for k, obj in enumerate(root.findall("object"), 1):
            name = (obj.findtext("name") or "").strip()
            try:
                vals = [float(obj.findtext(f"bndbox/{t}")) for t in ("xmin", "ymin", "xmax", "ymax")]
            except (TypeError, ValueError) as exc:
                raise DatasetError(f"{xml}: object {k} ({name or 'no name'}): bndbox needs numeric "
                                   "xmin, ymin, xmax, ymax") from exc
            if not name:
                raise DatasetError(f"{xml}: object {k} has no <name>")
            xmin, ymin, xmax, ymax = vals
            boxes.append((name, xmin - 1, ymin - 1, xmax, ymax))  # VOC pixels are 1-based, inclusive
        records.append(Record(image, split, boxes, size, str(xml)))
    return records


# ----------------------------------------------------------------------------------------- COCO
def _load_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from exc
    return data if isinstance(data, dict) else {}


def read_coco(src: Path) -> tuple[list[Record], list[str]]:
    if src.is_file():
        files, root = [src], src.parent
    else:
        files = sorted(p for p in src.rglob("*.json") if p.is_file())
        root = src
    docs = [(f, _load_json(f)) for f in files]
    docs = [(f, d) for f, d in docs if "images" in d and "annotations" in d]
    if not docs:
        raise DatasetError(f"{src}: no COCO JSON found (a file with 'images', 'annotations' and 'categories')")
    index = _image_index(root)
    names: list[str] | None = None
    records: list[Record] = []
    for f, d in docs:
        cats = sorted(d.get("categories") or [], key=lambda c: c.get("id", 0))
        these = [str(c.get("name")) for c in cats]
        if names is None:
            names = these
        elif these != names:
            raise DatasetError(f"{f}: categories {these} differ from {docs[0][0]}'s {names}; "
                               "class lists must match across the COCO files")
        cat_name = {c.get("id"): str(c.get("name")) for c in cats}
        split = _split_from_file_name(f.stem)
        by_id: dict = {}
        for k, im in enumerate(d["images"]):
            if "id" not in im or "file_name" not in im:
                raise DatasetError(f"{f}: images[{k}] needs 'id' and 'file_name'")
            fname = str(im["file_name"])
            cand = [f.parent / fname, f.parent.parent / "images" / fname, root / fname]
            if split:
                cand.append(f.parent.parent / "images" / split / Path(fname).name)
            path = next((c for c in cand if c.is_file()), None) or _find_image(
                index, Path(fname).name, [split or "", Path(fname).parent.name], f"{f}: images[{k}]")
            w, h = int(im.get("width") or 0), int(im.get("height") or 0)
            by_id[im["id"]] = Record(path, split, [], (w, h) if w > 0 and h > 0 else None, f"{f}: images[{k}]")
        for k, ann in enumerate(d["annotations"]):
            where = f"{f}: annotations[{k}] (id {ann.get('id')})"
            if ann.get("iscrowd"):
                continue  # crowd regions are not single defects
            rec = by_id.get(ann.get("image_id"))
            if rec is None:
                raise DatasetError(f"{where}: image_id {ann.get('image_id')} is not in 'images'")
            if ann.get("category_id") not in cat_name:
                raise DatasetError(f"{where}: category_id {ann.get('category_id')} is not in 'categories'")
            bbox = ann.get("bbox")
            if not isinstance(bbox, list) or len(bbox) != 4:
                raise DatasetError(f"{where}: bbox must be [x, y, width, height], got {bbox!r}")
            x, y, w, h = (float(v) for v in bbox)
            rec.boxes.append((cat_name[ann["category_id"]], x, y, x + w, y + h))
        records += list(by_id.values())
    return records, names or []


# ----------------------------------------------------------------------------------------- YOLO
def read_yolo(src: Path, classes: list[str] | None) -> tuple[list[Record], list[str]]:
    """Reuses split.load_pool (data.yaml or flat folder); rows become pixel-free records."""
    names, items, _ = load_pool(src, None if (src / "data.yaml").is_file() else classes)
    records = []
    for it in items:
        boxes = [(names[r.cls], r.cx - r.w / 2, r.cy - r.h / 2, r.cx + r.w / 2, r.cy + r.h / 2) for r in it.rows]
        records.append(Record(it.image, it.split or None, boxes, (1, 1), str(it.image)))  # normalised: size 1x1
    return records, names


# --------------------------------------------------------------------------------------- common
def _decode_size(path: Path) -> tuple[int, int]:
    img = cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_UNCHANGED) if path.stat().st_size else None
    if img is None:
        raise DatasetError(f"{path}: cannot be decoded (corrupt, truncated or not an image); remove or replace it")
    return img.shape[1], img.shape[0]


def _to_rows(rec: Record, size: tuple[int, int], class_id: dict[str, int], normalised: bool) -> list[LabelRow]:
    w, h = (1, 1) if normalised else size
    slack = EDGE_SLACK_PX / max(size) if normalised else EDGE_SLACK_PX
    rows = []
    for k, (name, x0, y0, x1, y1) in enumerate(rec.boxes, 1):
        if name not in class_id:
            raise DatasetError(f"{rec.origin}: box {k} has class '{name}', which is not in the class list "
                               f"{list(class_id)}; add it to --classes or drop the box")
        if x1 <= x0 or y1 <= y0:
            raise DatasetError(f"{rec.origin}: box {k} ({name}) has zero or negative size: {x0, y0, x1, y1}")
        if x0 < -slack or y0 < -slack or x1 > w + slack or y1 > h + slack:
            raise DatasetError(f"{rec.origin}: box {k} ({name}) {[round(v, 2) for v in (x0, y0, x1, y1)]} "
                               f"lies outside the {size[0]}x{size[1]} image {rec.image.name}")
        x0, y0, x1, y1 = max(0.0, x0), max(0.0, y0), min(float(w), x1), min(float(h), y1)
        rows.append(LabelRow(class_id[name], (x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h))
    return rows


def import_dataset(fmt: str, src: Path, dst: Path, classes: list[str] | None = None, val: float = 0.2,
                   test: float = 0.0, seed: int = 0, overwrite: bool = False) -> dict:
    src, dst = Path(src), Path(dst)
    if fmt not in FORMATS:
        raise DatasetError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if not src.exists():
        raise DatasetError(f"{src}: source not found")
    check_fractions(val, test)
    if fmt == "voc":
        records = read_voc(src)
        found = sorted({b[0] for r in records for b in r.boxes})
    elif fmt == "coco":
        records, found = read_coco(src)
    else:
        records, found = read_yolo(src, classes)
    names = classes or found
    if not names:
        raise DatasetError(f"{src}: no class names found in the source; pass --classes name1,name2,...")
    if not records:
        raise DatasetError(f"{src}: the source holds no images")
    class_id = {n: i for i, n in enumerate(names)}
    seen: dict[Path, Record] = {}
    rows_of: list[list[LabelRow]] = []
    for rec in records:
        if rec.image in seen:
            raise DatasetError(f"{rec.origin}: image {rec.image} is already annotated by {seen[rec.image].origin}")
        seen[rec.image] = rec
        size = _decode_size(rec.image)
        if rec.size and fmt != "yolo" and rec.size != size:
            raise DatasetError(f"{rec.origin}: says the image is {rec.size[0]}x{rec.size[1]} but {rec.image} is "
                               f"{size[0]}x{size[1]}; fix the annotation's size")
        rows_of.append(_to_rows(rec, size, class_id, normalised=fmt == "yolo"))
    splits = [r.split for r in records]
    if all(s is None for s in splits):
        splits = assign_splits([{row.cls for row in rows} for rows in rows_of], val, test, seed)
    else:
        splits = [s or "train" for s in splits]
    taken: dict[str, set[str]] = {}
    entries = [Entry(s, unique_name(r.image.stem, r.image.suffix.lower(), taken.setdefault(s, set())), rows,
                     source=r.image) for r, rows, s in zip(records, rows_of, splits)]
    manifest = {"tool": "defectgate data import", "format": fmt, "source": str(src.absolute()),
                "seed": seed, "source_classes": found}
    return write_dataset(dst, list(names), entries, manifest, overwrite)
