"""Background (OK) images mixed into training: `defectgate train --background SHARE` (config key
`background`). NEU-DET's train split holds defect images only, so the detector never sees a good
surface as a negative; ultralytics trains an image without boxes as background.

SHARE is the fraction of the mixed training set that are OK crops: beside all N train images (every
defect image is kept, and OK images the split already has stay as they are) come
k = round(SHARE * N / (1 - SHARE)) crops, one defect-free window per defect image (okparts.ok_window:
the largest square of 64..128 px, 6 px from every box), from a seeded draw of the defect images.
The mix is a dataset of its own, <run>/data-bg/ (symlinks to the train images, the crops with empty
label files, val and test pointing at the original ones) with background.json saying what it holds.
Two steps, so that bad input stops before anything is written: `plan` reads and checks, `write`
builds the folder all at once (staging)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from defectgate.errors import DatasetError
from defectgate.staging import staged_dir

from .data.layout import write_data_yaml
from .datayaml import DataSpec, label_path_for, read_image, read_labels, split_images
from .okparts import cut_ok_part, link_part, ok_window

MANIFEST = "background.json"


@dataclass
class Plan:
    spec: DataSpec
    share: float
    seed: int
    images: list[Path]  # every train image, kept as it is
    defect_images: int
    crops: list[tuple[Path, tuple[int, int, int]]] = field(default_factory=list)  # (image, (x, y, side))


def crops_needed(n_train: int, share: float) -> int:
    """How many OK crops make `share` of a set with `n_train` other images (at least 1 when share > 0)."""
    return max(1, round(share * n_train / (1 - share))) if share > 0 else 0


def plan(spec: DataSpec, share: float, seed: int = 0) -> Plan:
    """Choose the crops; DatasetError naming the yaml and the share when the train split cannot give them."""
    if not 0 <= share < 1:  # the config's validator says it first; this guards direct callers
        raise DatasetError(f"key 'background': {share!r} is outside [0, 1)")
    what = f"{spec.yaml_path}: background {share:g}"
    images = split_images(spec, "train")
    names = [p.name for p in images]
    clash = sorted({n for n in names if names.count(n) > 1} | {n for n in names if n.startswith("ok_")})
    if clash:
        raise DatasetError(f"{what}: train image names must be unique and not start with 'ok_' "
                           f"(the mix keeps them in one folder); first: {clash[0]}")
    nc = len(spec.names)
    defect = [p for p in images if len(read_labels(label_path_for(p), 1, 1, nc)[0])]
    if not defect:
        raise DatasetError(f"{what}: the train split has no defect images (every label file is empty or "
                           "missing); OK parts would leave no defect to learn")
    p = Plan(spec, share, seed, images, len(defect))
    need = crops_needed(len(images), share)
    if not need:
        return p  # share 0: the split as it is
    for i in np.random.default_rng(seed).permutation(len(defect)):
        if len(p.crops) == need:
            break
        img = read_image(defect[i])
        h, w = img.shape[:2]
        win = ok_window((h, w), read_labels(label_path_for(defect[i]), w, h, nc)[0])
        if win:
            p.crops.append((defect[i], win))
    if not p.crops:
        raise DatasetError(f"{what}: no defect image of the train split has a defect-free window (a square of "
                           "64 px or more, 6 px from every box): there is no OK part to cut")
    if len(p.crops) < need:
        most = len(p.crops) / (len(images) + len(p.crops))
        raise DatasetError(f"{what}: needs {need} OK crops beside the {len(images)} train images, but only "
                           f"{len(p.crops)} of the {len(defect)} defect images have a defect-free window; "
                           f"the most this split gives is background {most:.3f}")
    return p


def write(p: Plan, out: str | Path) -> dict:
    """Build the mixed dataset at `out` (replaced as a whole); its manifest."""
    out = Path(out).absolute()
    man = {"share": p.share, "share_made": round(len(p.crops) / (len(p.images) + len(p.crops)), 4),
           "train_images": len(p.images), "defect_images": p.defect_images,
           "ok_images": len(p.images) - p.defect_images, "ok_crops": len(p.crops), "seed": p.seed,
           "source": str(p.spec.yaml_path), "data": str(out / "data.yaml")}
    with staged_dir(out) as tmp:
        img_dir, lbl_dir = tmp / "images" / "train", tmp / "labels" / "train"
        img_dir.mkdir(parents=True)
        lbl_dir.mkdir(parents=True)
        for img_path in p.images:
            link_part(img_path, img_dir, lbl_dir)
        for img_path, win in p.crops:
            cut_ok_part(read_image(img_path), win, img_dir, lbl_dir, img_path.stem)
        write_data_yaml(tmp, out, p.spec.names, ["train"],
                        elsewhere={s: p.spec.splits[s] for s in ("val", "test") if s in p.spec.splits})
        (tmp / MANIFEST).write_text(json.dumps(man, indent=2) + "\n")
    return man


def read_manifest(folder: str | Path) -> dict:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise DatasetError(f"{path}: the background mix of this run is missing; train again without --resume")
    return json.loads(path.read_text())
