"""OK parts cut from an all-defective dataset (NEU-DET's escape/overkill numbers rest on them)."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from defectgate.errors import DatasetError
from defectgate_training import okparts
from defectgate_training.datayaml import label_path_for, load_data_yaml, read_labels, split_images


def _all_defective(root: Path, n: int = 4, corrupt: str | None = None) -> Path:
    """n 200x200 images, each with one defect box in its top-left corner (plenty of clean area)."""
    (root / "images" / "val").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        name = f"p{i}.png"
        if name == corrupt:
            (root / "images" / "val" / name).write_bytes(b"not a png")
        else:
            cv2.imwrite(str(root / "images" / "val" / name), rng.integers(0, 255, (200, 200, 3), np.uint8))
        (root / "labels" / "val" / f"p{i}.txt").write_text("1 0.15 0.15 0.2 0.2\n")
    (root / "data.yaml").write_text(f"path: {root}\nval: images/val\nnames: [scratch, dent]\n")
    return root / "data.yaml"


def test_ok_window_keeps_its_margin_from_every_box():
    boxes = np.array([[0, 0, 60, 60], [150, 150, 200, 200]], np.float32)
    x, y, side = okparts.ok_window((200, 200), boxes)
    assert side == 128  # the largest side that fits between the two boxes
    for x1, y1, x2, y2 in boxes:
        assert x >= x2 + 6 or x + side <= x1 - 6 or y >= y2 + 6 or y + side <= y1 - 6
    assert okparts.ok_window((200, 200), np.array([[0, 0, 200, 200]], np.float32)) is None


def test_halves_are_disjoint_and_ok_crops_are_clean(tmp_path):
    data = _all_defective(tmp_path / "src")
    # the output's parent does not exist yet: the folder must still be built next to it, not in /tmp
    a = okparts.build(str(data), "val", tmp_path / "new" / "calib", every=2, offset=0)
    b = okparts.build(str(data), "val", tmp_path / "new" / "hold", every=2, offset=1)
    assert (a["ng_parts"], a["ok_parts"], b["ng_parts"], b["ok_parts"]) == (2, 2, 2, 2)
    names = {}
    for key, res in (("a", a), ("b", b)):
        spec = load_data_yaml(res["data"])
        imgs = split_images(spec, "val")
        names[key] = {p.name for p in imgs if not p.name.startswith("ok_")}
        for p in imgs:
            img = cv2.imread(str(p))
            boxes, _ = read_labels(label_path_for(p), *img.shape[1::-1], 2)
            assert (len(boxes) == 0) == p.name.startswith("ok_")
    assert names["a"] and names["b"] and not names["a"] & names["b"]
    assert not [p for p in (tmp_path / "new").iterdir() if p.name.startswith(".")]  # no temp left over


def test_a_corrupt_image_is_named_and_nothing_is_written(tmp_path, capsys):
    data = _all_defective(tmp_path / "src", corrupt="p2.png")
    out = tmp_path / "out" / "mixed"
    with pytest.raises(DatasetError, match=r"p2\.png: image cannot be read"):
        okparts.build(str(data), "val", out)
    assert not out.exists() and list((tmp_path / "out").iterdir()) == []
    assert okparts.main(["--data", str(data), "--out", str(out)]) == 2
    assert "p2.png" in capsys.readouterr().err


def test_a_missing_label_is_an_ok_part_not_a_crash(tmp_path):
    data = _all_defective(tmp_path / "src", n=2)
    (tmp_path / "src" / "labels" / "val" / "p1.txt").unlink()
    res = okparts.build(str(data), "val", tmp_path / "mixed")
    assert (res["ng_parts"], res["ok_parts"]) == (1, 2)  # p0 + its crop are NG + OK; p1 is OK as it is
    assert (tmp_path / "mixed" / "labels" / "val" / "p1.txt").read_text() == ""


def test_data_okparts_subcommand_writes_ng_links_ok_crops_and_a_loadable_yaml(tmp_path, capsys):
    from defectgate.cli import main

    data = _all_defective(tmp_path / "src", n=4)
    (tmp_path / "src" / "labels" / "val" / "p2.txt").write_text("0 0.5 0.5 1.0 1.0\n")  # no clean window left
    (tmp_path / "src" / "labels" / "val" / "p3.txt").write_text("")  # an OK part already
    out = tmp_path / "runs" / "val-ok"
    assert main(["data", "okparts", "--data", str(data), "--split", "val", "--out", str(out)]) == 0
    line = capsys.readouterr().out
    assert "3 NG images" in line and "2 OK crops" in line and "1 NG images gave no OK window" in line, line
    assert "1 images were OK already" in line
    imgs = split_images(load_data_yaml(out / "data.yaml"), "val")
    names = sorted(p.name for p in imgs)
    assert names == ["ok_p0.png", "ok_p1.png", "p0.png", "p1.png", "p2.png", "p3.png"]
    for p in imgs:
        if p.name.startswith("ok_"):
            assert not p.is_symlink() and label_path_for(p).read_text() == ""
            assert cv2.imread(str(p)).shape == (128, 128, 3)
        else:
            assert p.is_symlink() and p.resolve() == (tmp_path / "src" / "images" / "val" / p.name).resolve()
            assert label_path_for(p).read_text() == (tmp_path / "src" / "labels" / "val" / f"{p.stem}.txt").read_text()


@pytest.mark.parametrize("case, match", [
    ("no-yaml", r"nope\.yaml: dataset yaml not found"),
    ("no-split", r"data\.yaml: split 'train' is not defined"),
    ("every-0", r"--every 0 --offset 0: need every >= 1"),
])
def test_data_okparts_bad_input_is_named_and_writes_nothing(tmp_path, capsys, case, match):
    from defectgate.cli import main

    data = _all_defective(tmp_path / "src", n=2)
    args = {"no-yaml": ["--data", str(tmp_path / "nope.yaml")], "no-split": ["--data", str(data), "--split", "train"],
            "every-0": ["--data", str(data), "--every", "0"]}[case]
    out = tmp_path / "runs" / "ok"
    assert main(["data", "okparts", *args, "--out", str(out)]) == 2
    assert re.search(match, capsys.readouterr().err)
    assert not (tmp_path / "runs").exists()  # not even the parent folder
