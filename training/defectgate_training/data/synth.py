"""`defectgate data synth`: the embedded default dataset, rendered by `defectgate.synthparts`.

Image i of seed S is scene `SCENE_SEED_BASE + S * 1_000_003 + i`; the synthetic conveyor of the
runtime uses `S * 1_000_003 + part`, so a dataset and a station run never show the same part.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import cv2

from defectgate import synthparts
from defectgate.errors import DatasetError

from .layout import Entry, LabelRow, write_dataset
from .split import assign_splits, check_fractions

SCENE_SEED_BASE = 1_000_000_000


def scene_seed(seed: int, index: int) -> int:
    return SCENE_SEED_BASE + seed * 1_000_003 + index


def scene_rows(scene: synthparts.Scene) -> list[LabelRow]:
    h, w = scene.image.shape[:2]
    rows = []
    for (x0, y0, x1, y1), c in zip(scene.boxes.tolist(), scene.class_ids.tolist()):
        rows.append(LabelRow(int(c), (x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h))
    return rows


def synthesize(out: Path, images: int, seed: int = 0, ng_rate: float = 0.4, hw: tuple[int, int] = (240, 320),
               val_frac: float = 0.2, overwrite: bool = False) -> dict:
    """Render `images` scenes into a YOLO dataset at `out`; returns the manifest."""
    if images < 1:
        raise DatasetError(f"--images {images}: need at least 1 image")
    if not 0 <= ng_rate <= 1:
        raise DatasetError(f"--ng-rate {ng_rate}: must be within 0..1")
    if min(hw) < 32:
        raise DatasetError(f"--imgsz {hw[0]} {hw[1]}: images must be at least 32x32 pixels")
    check_fractions(val_frac, 0.0)
    t0 = time.perf_counter()
    out = Path(out).absolute()
    if out.is_dir() and any(out.iterdir()) and not overwrite:  # fail before minutes of rendering
        raise DatasetError(f"{out} already exists and is not empty; choose another --out or pass --overwrite")
    out.parent.mkdir(parents=True, exist_ok=True)
    # render straight to PNG files in a scratch folder (memory stays flat for large N); the split
    # needs every image's classes first, then write_dataset moves the files into place
    scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}.render-", dir=out.parent))
    try:
        scenes = []
        for i in range(images):
            scene = synthparts.render_scene(scene_seed(seed, i), hw, ng_rate)
            name = f"synth_s{seed}_{i:05d}.png"
            if not cv2.imwrite(str(scratch / name), scene.image, [cv2.IMWRITE_PNG_COMPRESSION, 1]):
                raise DatasetError(f"{scratch / name}: could not write image (disk full?)")
            scenes.append((name, scene_rows(scene)))
        splits = assign_splits([{r.cls for r in rows} for _, rows in scenes], val_frac, 0.0, seed)
        entries = [Entry(split, name, rows, source=scratch / name, move=True)
                   for (name, rows), split in zip(scenes, splits)]
        manifest = _write(out, entries, seed, images, ng_rate, hw, val_frac, overwrite)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    manifest["seconds"] = round(time.perf_counter() - t0, 2)  # reported, not stored: manifests stay reproducible
    return manifest


def _write(out, entries, seed, images, ng_rate, hw, val_frac, overwrite) -> dict:
    manifest = {
        "tool": "defectgate data synth",
        "generator": synthparts.GENERATOR_VERSION,
        "seed": seed,
        "images": images,
        "ng_rate": ng_rate,
        "imgsz": [int(hw[0]), int(hw[1])],
        "val_frac": val_frac,
    }
    return write_dataset(out, list(synthparts.CLASSES), entries, manifest, overwrite)
