"""Mix OK parts into a dataset whose images are all defective (NEU-DET), for part-level escape and
overkill numbers.

How: for each image of the split, the largest square window (side 64..128 px, stride 8) that keeps
a margin from every labelled box is cut out and saved as an OK part with an empty label file. The
originals stay as NG parts (symlinked). Limits, said plainly: the crops are smaller than the parts
(the model sees them upscaled), and NEU labels are not exhaustive, so a crop may hold an unlabelled
defect: the overkill rate measured this way is pessimistic.

    defectgate data okparts --data neu-det/data.yaml --split val --out runs/neu-val-ok
    (--every 2 --offset 0|1 for two disjoint halves: calibrate thresholds on one, report on the other;
    `python -m defectgate_training.okparts` takes the same options)

The same windows, cut from the train split, are the background images that `defectgate train
--background SHARE` mixes into training (background.py).
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


def cut_ok_part(img: np.ndarray, win: tuple[int, int, int], images_dir: Path, labels_dir: Path, stem: str) -> Path:
    """Save the window `win` of `img` as OK part ok_<stem>.png with an empty label file."""
    x, y, s = win
    dst = images_dir / f"ok_{stem}.png"
    if not cv2.imwrite(str(dst), img[y:y + s, x:x + s]):
        raise DatasetError(f"{dst}: could not write the OK crop (disk full or not writable?)")
    (labels_dir / f"ok_{stem}.txt").write_text("")
    return dst


def link_part(img_path: Path, images_dir: Path, labels_dir: Path) -> None:
    """The original image as a symlink, its label file copied; a missing label file means "no
    defects" (read_labels): the copy says so with an empty file."""
    label = label_path_for(img_path)
    os.symlink(img_path.resolve(), images_dir / img_path.name)
    (labels_dir / f"{img_path.stem}.txt").write_text(label.read_text() if label.is_file() else "")


def build(data: str, split: str, out: str | Path, every: int = 1, offset: int = 0) -> dict:
    """Write the mixed dataset; `every`/`offset` keep every n-th image only (disjoint calibration
    and hold-out halves: every=2 offset=0 and every=2 offset=1). All or nothing: the folder is
    built next to `out` and replaces it only when every image was read."""
    if every < 1 or not 0 <= offset < every:
        raise DatasetError(f"--every {every} --offset {offset}: need every >= 1 and 0 <= offset < every")
    spec = load_data_yaml(data)
    images = split_images(spec, split)[offset::every]  # a missing split fails here, before any folder exists
    out = Path(out).absolute()
    n_ng = n_ok = n_crops = 0
    with staged_dir(out) as tmp:
        img_dir, lbl_dir = tmp / "images" / split, tmp / "labels" / split
        img_dir.mkdir(parents=True)
        lbl_dir.mkdir(parents=True)
        for img_path in images:
            img = read_image(img_path)
            h, w = img.shape[:2]
            boxes, _ = read_labels(label_path_for(img_path), w, h, len(spec.names))
            link_part(img_path, img_dir, lbl_dir)
            if not len(boxes):
                n_ok += 1  # already an OK part: no crop needed
                continue
            n_ng += 1
            win = ok_window((h, w), boxes)
            if win:
                cut_ok_part(img, win, img_dir, lbl_dir, img_path.stem)
                n_crops += 1
        write_data_yaml(tmp, out, spec.names, [split])
    return {"ng_parts": n_ng, "ok_parts": n_ok + n_crops, "ok_crops": n_crops, "ok_images": n_ok,
            "no_window": n_ng - n_crops, "data": str(out / "data.yaml")}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `defectgate data okparts` (and of `python -m defectgate_training.okparts`)."""
    p.add_argument("--data", required=True, help="dataset yaml (or its folder)")
    p.add_argument("--split", default="val", help="the split to cut OK parts from (default val)")
    p.add_argument("--out", required=True, help="folder of the new dataset (replaced as a whole)")
    p.add_argument("--every", type=int, default=1, help="keep every n-th image (2 = a half)")
    p.add_argument("--offset", type=int, default=0, help="which of the n interleaved parts (0..n-1)")


def run(a: argparse.Namespace) -> str:
    """Build from parsed options; the one-line summary."""
    r = build(a.data, a.split, a.out, a.every, a.offset)
    return (f"wrote {r['data']}: {r['ng_parts']} NG images, {r['ok_crops']} OK crops, "
            f"{r['no_window']} NG images gave no OK window, {r['ok_images']} images were OK already "
            f"({r['ng_parts']} NG + {r['ok_parts']} OK parts)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(p)
    a = p.parse_args(argv)
    try:
        print(run(a))
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
