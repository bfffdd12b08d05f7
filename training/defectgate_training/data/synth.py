"""`defectgate data synth`: the embedded default dataset, rendered by `defectgate.synthparts`.

Image i of seed S is scene `SCENE_SEED_BASE + S * 1_000_003 + i`; the synthetic conveyor of the
runtime uses `S * 1_000_003 + part`, so a dataset and a station run never show the same part.
Asked again for the same dataset at the same place, synth keeps the existing one (so `make demo`
can run twice); any other non-empty --out needs --overwrite.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import yaml

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
               val_frac: float = 0.2, overwrite: bool = False, workers: int = 0) -> dict:
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
    params = _params(seed, images, ng_rate, hw, val_frac)
    if out.is_dir() and any(out.iterdir()) and not overwrite:  # decide before minutes of rendering
        existing = _up_to_date(out, params)
        if existing is not None:  # same generator, same parameters: the files would be identical
            return {**existing, "reused": True, "seconds": round(time.perf_counter() - t0, 2)}
        raise DatasetError(f"{out} already exists and is not empty (and is not this synthetic dataset with "
                           "the same parameters); choose another --out or pass --overwrite")
    out.parent.mkdir(parents=True, exist_ok=True)
    # render straight to PNG files in a scratch folder (memory stays flat for large N); the split
    # needs every image's classes first, then write_dataset moves the files into place
    scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}.render-", dir=out.parent))
    try:
        jobs = [(scratch, seed, i, hw, ng_rate) for i in range(images)]
        workers = _workers(workers, images)
        if workers == 1:
            scenes = [_render_one(j) for j in jobs]
        else:  # scenes are independent and seeded per index: same files whatever the worker count
            # spawn, not fork: a forked child of a process whose OpenCV/torch thread pools are
            # already running can deadlock
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                     initializer=cv2.setNumThreads, initargs=(1,)) as pool:
                scenes = list(pool.map(_render_one, jobs, chunksize=16))
        splits = assign_splits([{r.cls for r in rows} for _, rows in scenes], val_frac, 0.0, seed)
        entries = [Entry(split, name, rows, source=scratch / name, move=True)
                   for (name, rows), split in zip(scenes, splits)]
        manifest = write_dataset(out, list(synthparts.CLASSES), entries, params, overwrite)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    manifest["seconds"] = round(time.perf_counter() - t0, 2)  # reported, not stored: manifests stay reproducible
    return manifest


def _render_one(job: tuple) -> tuple[str, list[LabelRow]]:
    scratch, seed, i, hw, ng_rate = job
    scene = synthparts.render_scene(scene_seed(seed, i), hw, ng_rate)
    name = f"synth_s{seed}_{i:05d}.png"
    if not cv2.imwrite(str(scratch / name), scene.image, [cv2.IMWRITE_PNG_COMPRESSION, 1]):
        raise DatasetError(f"{scratch / name}: could not write image (disk full?)")
    return name, scene_rows(scene)


def _workers(requested: int, images: int) -> int:
    """0 = automatic: up to 4 processes, one for small sets (a pool costs more than it saves)."""
    if requested > 0:
        return requested
    if images < 64:
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(4, cpus))


def _params(seed: int, images: int, ng_rate: float, hw: tuple[int, int], val_frac: float) -> dict:
    return {
        "tool": "defectgate data synth",
        "generator": synthparts.GENERATOR_VERSION,
        "seed": seed,
        "images": images,
        "ng_rate": ng_rate,
        "imgsz": [int(hw[0]), int(hw[1])],
        "val_frac": val_frac,
    }


def _up_to_date(out: Path, params: dict) -> dict | None:
    """The manifest of `out` when it is a complete synth dataset made with `params` at this path
    (so `make demo` can run twice without rendering again), else None."""
    try:
        manifest = json.loads((out / "manifest.json").read_text())
        data = yaml.safe_load((out / "data.yaml").read_text())
    except (OSError, ValueError, yaml.YAMLError):
        return None
    if not isinstance(manifest, dict) or not isinstance(data, dict):
        return None
    if any(manifest.get(k) != v for k, v in params.items()) or Path(str(data.get("path"))) != out:
        return None
    counted = sum(1 for p in (out / "images").rglob("*.png")) if (out / "images").is_dir() else 0
    return manifest if counted == params["images"] else None
