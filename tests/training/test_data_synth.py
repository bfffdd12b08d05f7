"""`defectgate data synth`: a YOLO dataset on disk that ultralytics can read, reproducible per seed,
written atomically."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from defectgate import synthparts
from defectgate.cli import main as cli
from defectgate.errors import DatasetError
from defectgate_training.data.synth import scene_seed, synthesize


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "ds"
    assert cli(["data", "synth", "--out", str(out), "--images", "20", "--seed", "3", "--imgsz", "96", "128",
                "--ng-rate", "0.5", "--val-frac", "0.25"]) == 0
    return out


def test_layout_yaml_and_manifest(tiny: Path):
    data = yaml.safe_load((tiny / "data.yaml").read_text())
    assert Path(data["path"]).is_absolute() and Path(data["path"]) == tiny.resolve()
    assert data["train"] == "images/train" and data["val"] == "images/val"
    assert data["nc"] == 4 and list(data["names"].values()) == list(synthparts.CLASSES)
    train, val = sorted((tiny / "images/train").glob("*.png")), sorted((tiny / "images/val").glob("*.png"))
    assert len(train) + len(val) == 20 and len(val) == 5
    labels = sorted((tiny / "labels").rglob("*.txt"))
    assert len(labels) == 20  # one per image, empty for OK parts
    man = json.loads((tiny / "manifest.json").read_text())
    assert man["seed"] == 3 and man["generator"] == synthparts.GENERATOR_VERSION
    assert man["splits"]["train"]["images"] == 15 and man["splits"]["val"]["images"] == 5
    n_boxes = sum(len(p.read_text().splitlines()) for p in labels)
    assert sum(man["boxes_per_class"].values()) == n_boxes
    ok = sum(1 for p in labels if not p.read_text().strip())
    assert man["splits"]["train"]["ok"] + man["splits"]["val"]["ok"] == ok and 0 < ok < 20
    assert not [p for p in tiny.parent.iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_labels_match_the_rendered_scene(tiny: Path):
    img = sorted((tiny / "images").rglob("*.png"))[0]
    index = int(img.stem.rsplit("_", 1)[1])
    scene = synthparts.render_scene(scene_seed(3, index), (96, 128), 0.5)
    import cv2

    assert np.array_equal(cv2.imread(str(img)), scene.image)  # PNG is lossless
    lbl = tiny / "labels" / img.parent.name / (img.stem + ".txt")
    rows = np.array([[float(v) for v in line.split()] for line in lbl.read_text().splitlines()]).reshape(-1, 5)
    assert rows[:, 0].astype(int).tolist() == scene.class_ids.tolist()
    x0 = (rows[:, 1] - rows[:, 3] / 2) * 128
    y1 = (rows[:, 2] + rows[:, 4] / 2) * 96
    assert np.allclose(x0, scene.boxes[:, 0], atol=1e-3) and np.allclose(y1, scene.boxes[:, 3], atol=1e-3)


def test_same_seed_same_files(tiny: Path, tmp_path: Path):
    again = tmp_path / "again"
    synthesize(again, 20, seed=3, ng_rate=0.5, hw=(96, 128), val_frac=0.25)
    a, b = _tree(tiny), _tree(again)
    assert a.keys() == b.keys()
    # data.yaml holds the absolute path, which differs; everything else is byte-identical
    assert all(a[k] == b[k] for k in a if k != "data.yaml")


def test_same_request_again_keeps_the_dataset(tmp_path: Path, capsys):
    out = tmp_path / "ds"
    args = ["data", "synth", "--out", str(out), "--images", "3", "--imgsz", "64", "64"]
    assert cli(args) == 0
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    capsys.readouterr()
    assert cli(args) == 0
    assert "up to date" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    # different parameters into the same folder: refused, the folder untouched
    assert cli(args[:-2] + ["64", "80"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_worker_processes_write_the_same_files(tmp_path: Path):
    one = synthesize(tmp_path / "one", 70, seed=4, hw=(48, 64), workers=1)
    two = synthesize(tmp_path / "two", 70, seed=4, hw=(48, 64), workers=2)
    a, b = _tree(tmp_path / "one"), _tree(tmp_path / "two")
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a if k != "data.yaml")
    assert one["splits"] == two["splits"]


def test_refuses_non_empty_output_unless_overwrite(tmp_path: Path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(DatasetError, match="not empty"):
        synthesize(out, 2, hw=(64, 64))
    synthesize(out, 2, hw=(64, 64), overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "data.yaml").is_file()


def test_failure_half_way_leaves_nothing(tmp_path: Path, monkeypatch):
    real = synthparts.render_scene
    calls = []

    def failing(seed, hw, ng_rate):  # fault injection: the 4th render blows up
        calls.append(seed)
        if len(calls) == 4:
            raise OSError("disk vanished")
        return real(seed, hw, ng_rate)

    monkeypatch.setattr(synthparts, "render_scene", failing)
    with pytest.raises(OSError):
        synthesize(tmp_path / "ds", 10, hw=(64, 64), workers=1)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, needle", [
    (["--images", "0"], "--images"),
    (["--ng-rate", "1.5"], "--ng-rate"),
    (["--val-frac", "1.0"], "--val"),
    (["--imgsz", "16", "16"], "--imgsz"),
])
def test_bad_arguments_exit_2_with_one_line(tmp_path: Path, capsys, args, needle):
    assert cli(["data", "synth", "--out", str(tmp_path / "x")] + args) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists()
