"""`defectgate data split`: stratified by class, seeded, every image in exactly one split, labels
travel with their images; a plain images folder becomes a dataset in place."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import pytest
import yaml

from defectgate.cli import main as cli
from defectgate.errors import DatasetError
from defectgate_training.data.split import assign_splits
from defectgate_training.data.synth import synthesize


def _content(ds: Path) -> dict[str, tuple[str, str]]:
    """image sha -> (split, label text)"""
    out = {}
    for img in (ds / "images").rglob("*.png"):
        lbl = ds / "labels" / img.parent.name / (img.stem + ".txt")
        out[hashlib.sha256(img.read_bytes()).hexdigest()] = (img.parent.name, lbl.read_text())
    return out


def test_assign_splits_is_stratified_and_seeded():
    # 200 OK parts, 60 with class 0, 30 with class 1, 10 with the rare class 2 (some also class 0)
    sets = [set()] * 200 + [{0}] * 60 + [{1}] * 30 + [{2}] * 5 + [{0, 2}] * 5
    a = assign_splits(sets, val=0.2, test=0.1, seed=0)
    assert Counter(a) == {"train": 210, "val": 60, "test": 30}
    per = lambda pred: Counter(s for s, cs in zip(a, sets) if pred(cs))  # noqa: E731
    assert per(lambda cs: 2 in cs) == {"train": 7, "val": 2, "test": 1}
    assert per(lambda cs: not cs) == {"train": 140, "val": 40, "test": 20}
    assert per(lambda cs: cs == {1}) == {"train": 21, "val": 6, "test": 3}
    assert a == assign_splits(sets, 0.2, 0.1, seed=0)
    assert a != assign_splits(sets, 0.2, 0.1, seed=1)


@pytest.mark.parametrize("val, test", [(1.0, 0.0), (0.6, 0.5), (-0.1, 0.0)])
def test_bad_fractions(val, test):
    with pytest.raises(DatasetError, match="fractions"):
        assign_splits([set()] * 4, val, test)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("split") / "src"
    synthesize(out, 30, seed=2, ng_rate=0.5, hw=(64, 96), val_frac=0.2)
    return out


def test_resplit_into_new_dataset(source: Path, tmp_path: Path):
    dst = tmp_path / "resplit"
    assert cli(["data", "split", str(source), "--out", str(dst), "--val", "0.3", "--test", "0.2", "--seed", "4"]) == 0
    before, after = _content(source), _content(dst)
    assert before.keys() == after.keys()  # every image exactly once (hash keys are unique per split too)
    assert {h: lbl for h, (_, lbl) in before.items()} == {h: lbl for h, (_, lbl) in after.items()}
    assert Counter(s for s, _ in after.values()) == {"train": 15, "val": 9, "test": 6}
    data = yaml.safe_load((dst / "data.yaml").read_text())
    assert data["test"] == "images/test" and Path(data["path"]) == dst.resolve()
    assert cli(["data", "validate", str(dst)]) == 0
    assert _content(source) == before  # the source is untouched


def test_flat_folder_is_split_in_place(tmp_path: Path, source: Path):
    flat = tmp_path / "flat"
    (flat / "images").mkdir(parents=True)
    (flat / "labels").mkdir()
    for img in (source / "images").rglob("*.png"):
        (flat / "images" / img.name).write_bytes(img.read_bytes())
        lbl = source / "labels" / img.parent.name / (img.stem + ".txt")
        (flat / "labels" / lbl.name).write_text(lbl.read_text())
    (flat / "README.md").write_text("line 3 images\n")
    assert cli(["data", "split", str(flat), "--val", "0.2", "--classes", "scratch,dent,crack,stain"]) == 0
    assert sorted(p.name for p in flat.iterdir()) == ["README.md", "data.yaml", "images", "labels", "manifest.json"]
    assert Counter(s for s, _ in _content(flat).values()) == {"train": 24, "val": 6}
    assert cli(["data", "validate", str(flat)]) == 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_flat_folder_without_classes(tmp_path: Path, capsys):
    (tmp_path / "flat").mkdir()
    assert cli(["data", "split", str(tmp_path / "flat")]) == 2
    assert "--classes" in capsys.readouterr().err


def test_duplicates_are_dropped_not_split_apart(tmp_path: Path, source: Path):
    flat = tmp_path / "flat"
    flat.mkdir()
    img = next((source / "images" / "train").glob("*.png"))
    for name in ("a.png", "b.png", "c.png"):
        (flat / name).write_bytes(img.read_bytes())
    other = next((source / "images" / "val").glob("*.png"))
    (flat / "d.png").write_bytes(other.read_bytes())
    dst = tmp_path / "out"
    assert cli(["data", "split", str(flat), "--out", str(dst), "--val", "0.5", "--classes", "x"]) == 0
    assert len(list((dst / "images").rglob("*.png"))) == 2
