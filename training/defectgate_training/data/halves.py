"""Two disjoint halves of one split: one to calibrate the thresholds on, one to gate and report on.

Why: thresholds calibrated to a 2 % escape rate on some parts meet it on those parts by construction;
only parts they were not fitted on say what the line will see. `make retrain` therefore calibrates on
the `calib` half and gates the promotion on the `gate` half (docs/accuracy.md, "How the splits are made").

The rule: the images of the split are stratified by their rarest class (OK parts, without boxes, are
a stratum of their own), each stratum is shuffled with the seed, and half of it (cumulative rounding
across strata) goes to `gate`, the rest to `calib`: the same `data split` rule (`assign_splits`), so
rare defect classes and OK parts reach both halves in proportion. Nothing is copied: each half is a
list file of the original image paths and a dataset yaml whose `val` is that list (labels stay where
ultralytics' rule finds them), and whose `train` is the source's `train`.

    OUT/calib.yaml  OUT/calib.txt      thresholds are calibrated here (export --data OUT/calib.yaml)
    OUT/gate.yaml   OUT/gate.txt       the promotion gate and the reported rates (promote --data OUT/gate.yaml)
    OUT/manifest.json                  source, split, seed, counts per half
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from defectgate.errors import DatasetError
from defectgate.staging import staged_dir

from .layout import label_path_for, list_split_images, load_data_yaml, read_label_rows
from .split import assign_splits

HALVES = ("calib", "gate")


def write_halves(data: str | Path, out: str | Path, split: str = "val", seed: int = 0) -> dict:
    """Write OUT/{calib,gate}.{yaml,txt} and manifest.json, all at once or not at all."""
    spec = load_data_yaml(data)
    images = list_split_images(spec, split)
    if len(images) < 4:
        raise DatasetError(f"{spec.yaml_path}: split '{split}' has {len(images)} images; two halves need at least 4 "
                           "(a gate of one or two parts says nothing)")
    rows = [read_label_rows(label_path_for(p), len(spec.names)) for p in images]
    assigned = assign_splits([{r.cls for r in rs} for rs in rows], val=0.5, seed=seed)
    half_of = {"train": "calib", "val": "gate"}  # assign_splits' names for the two halves
    members: dict[str, list[Path]] = {h: [] for h in HALVES}
    counts = {h: {"images": 0, "ng": 0, "ok": 0} for h in HALVES}
    for path, labels, s in zip(images, rows, assigned):
        members[half_of[s]].append(path)
        counts[half_of[s]]["images"] += 1
        counts[half_of[s]]["ng" if labels else "ok"] += 1
    manifest = {"tool": "defectgate data halves", "source": str(spec.yaml_path), "split": split, "seed": seed,
                "rule": "stratified by rarest class (OK parts their own stratum), seeded shuffle, half each",
                "halves": counts}
    train = [str(p) for p in spec.splits.get("train", [])]
    out = Path(out).absolute()
    with staged_dir(out) as tmp:
        for h in HALVES:
            (tmp / f"{h}.txt").write_text("".join(f"{p}\n" for p in members[h]))
            doc = {"path": str(spec.root), **({"train": train if len(train) > 1 else train[0]} if train else {}),
                   "val": str(out / f"{h}.txt"), "nc": len(spec.names),
                   "names": {i: n for i, n in enumerate(spec.names)}}
            (tmp / f"{h}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
