"""`defectgate data validate`: every kind of broken dataset is reported with file and line, exit 2;
OK parts (empty labels) and a clean dataset pass."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from defectgate.cli import main as cli
from defectgate_training.data.synth import synthesize
from defectgate_training.data.validate import validate

NEU = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets" / "neu-det"


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("v") / "clean"
    synthesize(out, 10, seed=5, ng_rate=0.6, hw=(64, 96), val_frac=0.3)
    return out


@pytest.fixture
def ds(clean: Path, tmp_path: Path) -> Path:
    """A private copy to break; data.yaml's absolute path is rewritten to the copy."""
    dst = tmp_path / "ds"
    shutil.copytree(clean, dst)
    y = dst / "data.yaml"
    y.write_text(y.read_text().replace(str(clean), str(dst)))
    return dst


def _ng_label(ds: Path) -> Path:
    return next(p for p in sorted((ds / "labels" / "train").glob("*.txt")) if p.read_text().strip())


def _run(ds: Path, capsys) -> tuple[int, str, str]:
    rc = cli(["data", "validate", str(ds)])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_clean_dataset_is_valid_and_ok_parts_are_info(ds: Path, capsys):
    rc, out, err = _run(ds, capsys)
    assert rc == 0, out
    assert "INFO" in out and "OK part" in out and "valid" in out and "ERROR" not in out
    rep = validate(ds)
    assert rep.ok and sum(rep.images.values()) == 10 and 0 < rep.ok_images < 10


def test_corrupt_image(ds: Path, capsys):
    img = sorted((ds / "images" / "val").glob("*.png"))[0]
    img.write_bytes(img.read_bytes()[:40])
    rc, out, _ = _run(ds, capsys)
    assert rc == 2 and f"images/val/{img.name}" in out and "cannot be decoded" in out


def test_label_out_of_range_names_file_and_line(ds: Path, capsys):
    lbl = _ng_label(ds)
    lbl.write_text(lbl.read_text() + "1 0.5 1.4 0.1 0.1\n")
    n = len(lbl.read_text().splitlines())
    rc, out, _ = _run(ds, capsys)
    assert rc == 2 and f"labels/train/{lbl.name}:{n}" in out and "out of range" in out


def test_unknown_class_id(ds: Path, capsys):
    lbl = _ng_label(ds)
    lbl.write_text("7 0.5 0.5 0.1 0.1\n")
    rc, out, _ = _run(ds, capsys)
    assert rc == 2 and f"{lbl.name}:1" in out and "class id 7 is unknown" in out


@pytest.mark.parametrize("line, needle", [
    ("0 0.5 0.5 0.1", "expected 5 numbers"),
    ("0 0.5 zero 0.1 0.1", "not numbers"),
    ("0 0.95 0.5 0.2 0.1", "outside the image"),
    ("1.5 0.5 0.5 0.1 0.1", "not a non-negative integer"),
    ("0 0.5 0.5 0 0.1", "zero width"),
])
def test_malformed_lines(ds: Path, capsys, line, needle):
    lbl = _ng_label(ds)
    lbl.write_text("0 0.5 0.5 0.1 0.1\n" + line + "\n")
    rc, out, _ = _run(ds, capsys)
    assert rc == 2 and f"{lbl.name}:2" in out and needle in out


def test_duplicate_across_splits_is_an_error_within_a_split_a_warning(ds: Path, capsys):
    src = sorted((ds / "images" / "train").glob("*.png"))[0]
    shutil.copyfile(src, ds / "images" / "train" / "copy_in_train.png")
    rc, out, _ = _run(ds, capsys)
    assert rc == 0 and "WARNING" in out and "copy_in_train.png" in out and "duplicate within 'train'" in out
    shutil.copyfile(src, ds / "images" / "val" / "copy_in_val.png")
    rc, out, _ = _run(ds, capsys)
    assert rc == 2 and "copy_in_val.png" in out and "leak" in out


def test_orphan_label_is_a_warning(ds: Path, capsys):
    (ds / "labels" / "train" / "ghost.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    rc, out, _ = _run(ds, capsys)
    assert rc == 0 and "ghost.txt" in out and "without an image" in out


def test_empty_dataset(ds: Path, capsys):
    for p in (ds / "images").rglob("*.png"):
        p.unlink()
    rc, out, _ = _run(ds, capsys)
    assert rc == 2 and "empty" in out and "data.yaml" in out


def test_missing_data_yaml_is_one_line(ds: Path, capsys):
    (ds / "data.yaml").unlink()
    rc, out, err = _run(ds, capsys)
    assert rc == 2 and "data.yaml" in err and "not found" in err and len(err.strip().splitlines()) == 1


def test_yaml_inconsistencies(ds: Path, capsys):
    y = ds / "data.yaml"
    y.write_text(y.read_text().replace("nc: 4", "nc: 5").replace("val: images/val", "val: images/nowhere"))
    rc, out, _ = _run(ds, capsys)
    assert rc == 2 and "nc is 5 but names lists 4" in out and "images/nowhere" in out


def test_json_report(ds: Path, capsys):
    lbl = _ng_label(ds)
    lbl.write_text("9 0.5 0.5 0.1 0.1\n")
    assert cli(["data", "validate", str(ds), "--json"]) == 2
    rep = json.loads(capsys.readouterr().out)
    assert rep["valid"] is False and len(rep["errors"]) == 1 and lbl.name in rep["errors"][0]
    assert rep["info"] and rep["classes"] == ["scratch", "dent", "crack", "stain"]


@pytest.mark.skipif(not NEU.is_dir(), reason="../shared/datasets/neu-det is not present on this machine")
def test_neu_det_is_valid(capsys):
    """Its data.yaml says `path: .`, which must resolve against the yaml's own folder."""
    assert cli(["data", "validate", str(NEU)]) == 0
    out = capsys.readouterr().out
    assert "1439 images (train 1080, val 359)" in out and "0 errors" in out
