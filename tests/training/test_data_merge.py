"""`defectgate data merge`: QA increments fold into the base dataset: dedupe by image content,
later labels win, splits never move, class lists must agree by name."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml

from defectgate.cli import main as cli
from defectgate_training.data.synth import synthesize


def _by_hash(ds: Path) -> dict[str, tuple[str, str]]:
    out = {}
    for img in (ds / "images").rglob("*.png"):
        lbl = ds / "labels" / img.parent.name / (img.stem + ".txt")
        out[hashlib.sha256(img.read_bytes()).hexdigest()] = (img.parent.name, lbl.read_text())
    return out


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("merge") / "base"
    synthesize(out, 12, seed=1, ng_rate=0.5, hw=(64, 96), val_frac=0.25)
    return out


def _increment(tmp_path: Path, base: Path, names: list[str] | None = None) -> Path:
    """Like a QA export: 4 new images in train, plus one base val image re-labelled as OK."""
    inc = tmp_path / "inc"
    synthesize(inc, 4, seed=77, ng_rate=0.5, hw=(64, 96), val_frac=0.0)
    val_img = next(p for p in sorted((base / "images" / "val").glob("*.png"))
                   if (base / "labels" / "val" / (p.stem + ".txt")).read_text().strip())
    shutil.copyfile(val_img, inc / "images" / "train" / "reviewed.png")
    (inc / "labels" / "train" / "reviewed.txt").write_text("")  # QA overturned: not a defect
    (inc / "manifest.json").write_text(json.dumps({"tool": "qa export", "reviewer": "anna"}))
    if names:
        y = inc / "data.yaml"
        data = yaml.safe_load(y.read_text())
        old = list(data["names"].values())
        data["names"] = {i: n for i, n in enumerate(names)}
        y.write_text(yaml.safe_dump(data))
        for lbl in (inc / "labels").rglob("*.txt"):
            lbl.write_text("".join(
                f"{names.index(old[int(l.split()[0])])} {l.split(' ', 1)[1]}\n" for l in lbl.read_text().splitlines()))
    return inc, hashlib.sha256(val_img.read_bytes()).hexdigest()


def test_merge_dedupes_and_later_labels_win(tmp_path: Path, base: Path):
    inc, reviewed = _increment(tmp_path, base)
    out = tmp_path / "merged"
    assert cli(["data", "merge", str(base), str(inc), "--out", str(out)]) == 0
    merged, b, i = _by_hash(out), _by_hash(base), _by_hash(inc)
    assert merged.keys() == b.keys() | i.keys() and len(merged) == 12 + 4
    assert merged[reviewed] == ("val", "")  # stays in val, takes the reviewed (empty) label
    for h in i.keys() - {reviewed}:
        assert merged[h] == i[h]
    for h in b.keys() - {reviewed}:
        assert merged[h] == b[h]
    man = json.loads((out / "manifest.json").read_text())
    assert man["sources"][1]["manifest"]["reviewer"] == "anna" and man["sources"][1]["already_present"] == 1
    assert cli(["data", "validate", str(out)]) == 0


def test_same_classes_in_another_order_are_remapped(tmp_path: Path, base: Path):
    reordered = ["stain", "crack", "dent", "scratch"]
    inc, _ = _increment(tmp_path, base, reordered)
    out = tmp_path / "merged"
    assert cli(["data", "merge", str(base), str(inc), "--out", str(out)]) == 0
    plain_inc, _ = _increment(tmp_path / "plain", base)
    ref = tmp_path / "ref"
    assert cli(["data", "merge", str(base), str(plain_inc), "--out", str(ref)]) == 0
    assert _by_hash(out) == _by_hash(ref)


def test_mismatched_class_lists_fail_clearly(tmp_path: Path, base: Path, capsys):
    inc, _ = _increment(tmp_path, base)
    y = inc / "data.yaml"
    data = yaml.safe_load(y.read_text())
    data["names"] = {0: "scratch", 1: "dent", 2: "crack", 3: "rust"}
    y.write_text(yaml.safe_dump(data))
    out = tmp_path / "merged"
    assert cli(["data", "merge", str(base), str(inc), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(y) in err and "rust" in err and "stain" in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_bad_label_in_an_increment_stops_the_merge(tmp_path: Path, base: Path, capsys):
    inc, _ = _increment(tmp_path, base)
    (inc / "labels" / "train" / "reviewed.txt").write_text("0 0.5 0.5 0.2 0.2\n5 0.5 0.5 0.2 0.2\n")
    assert cli(["data", "merge", str(base), str(inc), "--out", str(tmp_path / "m")]) == 2
    assert "reviewed.txt:2" in capsys.readouterr().err and not (tmp_path / "m").exists()


def test_empty_increment_is_refused(tmp_path: Path, base: Path, capsys):
    inc = tmp_path / "inc"
    (inc / "images" / "train").mkdir(parents=True)
    (inc / "data.yaml").write_text(yaml.safe_dump({"path": ".", "train": "images/train", "val": "images/train",
                                                   "names": {0: "scratch", 1: "dent", 2: "crack", 3: "stain"}}))
    assert cli(["data", "merge", str(base), str(inc), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "no images" in err and str(inc) in err and not (tmp_path / "m").exists()


def test_increment_without_data_yaml(tmp_path: Path, base: Path, capsys):
    (tmp_path / "inc").mkdir()
    assert cli(["data", "merge", str(base), str(tmp_path / "inc"), "--out", str(tmp_path / "m")]) == 2
    assert "data.yaml" in capsys.readouterr().err
