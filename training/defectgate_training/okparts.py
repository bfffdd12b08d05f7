"""Mix OK parts into a dataset whose images are all defective (NEU-DET), for part-level escape and
overkill numbers.

How: for each image of the split, the largest square window (side 64..128 px, stride 8) that keeps
a margin from every labelled box is cut out and saved as an OK part with an empty label file. The
originals stay as NG parts (symlinked). Limits, said plainly: the crops are smaller than the parts
(the model sees them upscaled), and NEU labels are not exhaustive, so a crop may hold an unlabelled
defect: the overkill rate measured this way is pessimistic.

    python -m defectgate_training.okparts --data neu-det/data.yaml --split val --out runs/neu-val-ok
    (--every 2 --offset 0|1 for two disjoint halves: calibrate thresholds on one, report on the other)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import cv2
import numpy as np

from defectgate.errors import DatasetError
from defectgate.staging import staged_dir

from .data.layout import write_data_yaml
from .datayaml import label_path_for, load_data_yaml, read_image, read_labels, split_images


def ok_window(hw: tuple[int, int], boxes: np.ndarray, sides=(128, 112, 96, 80, 64), margin: int = 6,
              stride: int = 8) -> tuple[int, int, int] | None:
    """(x, y, side) of the largest defect-free square window, or None."""
    h, w = hw
    grown = boxes + np.array([-margin, -margin, margin, margin], np.float32) if len(boxes) else boxes
    for side in sides:
        if side > min(h, w):
            continue
        for y in range(0, h - side + 1, stride):
            for x in range(0, w - side + 1, stride):
                if not len(grown):
                    return x, y, side
                hit = (grown[:, 0] < x + side) & (grown[:, 2] > x) & (grown[:, 1] < y + side) & (grown[:, 3] > y)
                if not hit.any():
                    return x, y, side
    return None


def build(data: str, split: str, out: str | Path, every: int = 1, offset: int = 0) -> dict:
    """Write the mixed dataset; `every`/`offset` keep every n-th image only (disjoint calibration
    and hold-out halves: every=2 offset=0 and every=2 offset=1). All or nothing: the folder is
    built next to `out` and replaces it only when every image was read."""
    spec = load_data_yaml(data)
    out = Path(out).absolute()
    n_ng = n_ok = 0
    with staged_dir(out) as tmp:
        (tmp / "images" / split).mkdir(parents=True)
        (tmp / "labels" / split).mkdir(parents=True)
        for img_path in split_images(spec, split)[offset::every]:
            img = read_image(img_path)
            h, w = img.shape[:2]
            label = label_path_for(img_path)
            boxes, _ = read_labels(label, w, h, len(spec.names))
            os.symlink(img_path.resolve(), tmp / "images" / split / img_path.name)
            # a missing label file means "no defects" (read_labels); keep that explicit in the copy
            (tmp / "labels" / split / f"{img_path.stem}.txt").write_text(label.read_text() if label.is_file() else "")
            if not len(boxes):
                n_ok += 1  # already an OK part: no crop needed
                continue
            n_ng += 1
            win = ok_window((h, w), boxes)
            if win:
                x, y, s = win
                name = f"ok_{img_path.stem}.png"
                cv2.imwrite(str(tmp / "images" / split / name), img[y:y + s, x:x + s])
                (tmp / "labels" / split / f"ok_{img_path.stem}.txt").write_text("")
                n_ok += 1
        write_data_yaml(tmp, out, spec.names, [split])
    return {"ng_parts": n_ng, "ok_parts": n_ok, "data": str(out / "data.yaml")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="val")
    p.add_argument("--out", required=True)
    p.add_argument("--every", type=int, default=1, help="keep every n-th image (2 = a half)")
    p.add_argument("--offset", type=int, default=0, help="which of the n interleaved parts (0..n-1)")
    a = p.parse_args(argv)
    try:
        print(build(a.data, a.split, a.out, a.every, a.offset))
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
