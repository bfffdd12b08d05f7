"""Background (OK) images mixed into training: `defectgate train --background SHARE` (issue 24)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from defectgate.errors import ConfigError, DatasetError
from defectgate_training import background
from defectgate_training.datayaml import label_path_for, load_data_yaml, split_images
from defectgate_training.train import load_train_config, train

CORNER = "1 0.15 0.15 0.2 0.2\n"  # a defect in the top-left corner: plenty of clean surface
WHOLE = "0 0.5 0.5 1.0 1.0\n"  # a defect over the whole image: no clean window


def _dataset(root: Path, train_labels: list[str], val: int = 3, hw: tuple[int, int] = (160, 160)) -> Path:
    """Noise images (real PNGs) with the given label text per train image; val images carry CORNER."""
    rng = np.random.default_rng(1)
    for split, labels in (("train", train_labels), ("val", [CORNER] * val)):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i, text in enumerate(labels):
            cv2.imwrite(str(root / "images" / split / f"{split}{i}.png"), rng.integers(0, 255, (*hw, 3), np.uint8))
            (root / "labels" / split / f"{split}{i}.txt").write_text(text)
    (root / "data.yaml").write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames: [scratch, dent]\n")
    return root / "data.yaml"


def _cfg(data: Path, out: Path, share: float, **extra):
    return load_train_config(None, {"data": str(data), "out": str(out), "background": share, "epochs": 1,
                                    "imgsz": 64, "batch": 4, "workers": 0, "device": "cpu", **extra})


@pytest.mark.parametrize("share", [0.2, 0.3, 0.4])  # 0.4: all 8 windows the split has
def test_the_mix_gives_the_share_and_keeps_every_defect_image(tmp_path, share):
    data = _dataset(tmp_path / "src", [CORNER] * 8 + [WHOLE] * 2 + [""] * 2)  # 10 defect + 2 OK images
    spec = load_data_yaml(data)
    man = background.write(background.plan(spec, share, seed=0), tmp_path / "run" / "data-bg")
    mixed = load_data_yaml(man["data"])
    imgs = split_images(mixed, "train")
    crops = [p for p in imgs if p.name.startswith("ok_")]
    assert len(imgs) == 12 + len(crops) and man["ok_crops"] == len(crops)
    assert abs(len(crops) / len(imgs) - share) <= 1 / len(imgs)  # the share, within one image's rounding
    assert (man["train_images"], man["defect_images"], man["ok_images"]) == (12, 10, 2)
    for src in split_images(spec, "train"):  # every original image, its label unchanged
        link = mixed.root / "images" / "train" / src.name
        assert link.is_symlink() and link.resolve() == src.resolve()
        assert label_path_for(link).read_text() == label_path_for(src).read_text()
    for p in crops:  # defect-free windows of defect images, with empty labels (ultralytics: background)
        assert not p.is_symlink() and label_path_for(p).read_text() == ""
        assert label_path_for(spec.root / "images" / "train" / p.name[3:]).read_text() == CORNER
    assert split_images(mixed, "val") == split_images(spec, "val")  # val is the original one
    assert json.loads((tmp_path / "run" / "data-bg" / "background.json").read_text()) == man


def test_the_draw_is_seeded(tmp_path):
    spec = load_data_yaml(_dataset(tmp_path / "src", [CORNER] * 10))
    names = [[p.name for p, _ in background.plan(spec, 0.2, seed=s).crops] for s in (0, 0, 1)]
    assert names[0] == names[1] and len(names[0]) == 2


@pytest.mark.parametrize("share", [1.0, -0.1, 1.5])
def test_a_share_outside_0_1_is_refused_naming_the_key_file_and_value(tmp_path, share):
    cfg_file = tmp_path / "train.yaml"
    cfg_file.write_text(f"data: d.yaml\nbackground: {share}\n")
    with pytest.raises(ConfigError, match=rf"train\.yaml: key 'background': .*\[0, 1\).*got {share}"):
        load_train_config(cfg_file)


def test_the_cli_refuses_a_bad_share_before_anything_is_written(tmp_path, capsys):
    from defectgate.cli import main

    data = _dataset(tmp_path / "src", [CORNER] * 4)
    assert main(["train", "--data", str(data), "--background", "1", "--out", str(tmp_path / "runs" / "t")]) == 2
    assert "key 'background'" in capsys.readouterr().err and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("labels, share, match", [
    ([""] * 4, 0.2, r"data\.yaml: background 0\.2: the train split has no defect images"),
    ([WHOLE] * 4, 0.2, r"data\.yaml: background 0\.2: no defect image of the train split has a defect-free window"),
    ([CORNER] * 2 + [WHOLE] * 4, 0.5, r"data\.yaml: background 0\.5: needs 6 OK crops .* only 2 of the 6 defect "
     r"images .* the most this split gives is background 0\.250"),
    ([CORNER] * 4, 0.99, r"background 0\.99: needs 396 OK crops"),
])
def test_a_split_that_cannot_give_the_share_stops_training_before_any_folder(tmp_path, labels, share, match):
    data = _dataset(tmp_path / "src", labels)
    with pytest.raises(DatasetError, match=match):
        train(_cfg(data, tmp_path / "runs" / "t", share))
    assert not (tmp_path / "runs").exists()


def test_share_0_is_the_split_as_it_is_and_a_small_share_gives_at_least_one_crop(tmp_path):
    spec = load_data_yaml(_dataset(tmp_path / "src", [CORNER] * 4))
    assert _cfg(spec.yaml_path, tmp_path / "t", 0.0).background == 0.0  # the default: off
    assert background.plan(spec, 0.0).crops == [] and background.crops_needed(4, 0.0) == 0
    assert len(background.plan(spec, 0.01).crops) == 1


@pytest.mark.slow
def test_ultralytics_trains_on_the_mix_and_the_run_records_it(tmp_path):
    pytest.importorskip("ultralytics", reason="needs the [train] extra")
    data = _dataset(tmp_path / "src", [CORNER] * 8 + [""] * 2, val=2, hw=(128, 128))
    res = train(_cfg(data, tmp_path / "run", 0.2, hyp={"plots": False}))
    bg = res.metrics["background"]
    assert (bg["share"], bg["ok_crops"], bg["train_images"]) == (0.2, 2, 10)
    assert res.metrics["data"]["images"]["train"] == 12  # the fingerprint is of the mix that trained the model
    assert str(tmp_path / "run" / "data-bg") in (tmp_path / "run" / "data.yaml").read_text()
    # ultralytics read the crops and the OK images as background: images with an empty label file
    from ultralytics.data.utils import load_dataset_cache_file

    cache = load_dataset_cache_file(tmp_path / "run" / "data-bg" / "labels" / "train.cache")
    nf, nm, ne, nc, n = cache["results"]
    assert (n, nf, ne, nm, nc) == (12, 12, 4, 0, 0)


@pytest.mark.slow
def test_share_0_trains_on_the_split_as_it_is(trained, synth_data):
    run = trained.run_dir
    assert not (run / "data-bg").exists() and "background" not in json.loads((run / "run.json").read_text())
    assert str(load_data_yaml(synth_data).root) in (run / "data.yaml").read_text()


def test_a_resume_without_the_first_runs_mix_is_refused_naming_it(tmp_path):
    data = _dataset(tmp_path / "src", [CORNER] * 4)
    (tmp_path / "run" / "weights").mkdir(parents=True)
    (tmp_path / "run" / "weights" / "last.pt").write_bytes(b"")  # an interrupted run, its data-bg gone
    with pytest.raises(DatasetError, match=r"run/data-bg/background\.json: the background mix of this run is missing"):
        train(_cfg(data, tmp_path / "run", 0.2), resume=True)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["weights"]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize("share", ["", "0.2"])
def test_make_train_passes_background_only_when_set(share):
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(["make", "-n", "train", f"BACKGROUND={share}"], cwd=root, capture_output=True, text=True,
                         check=True).stdout.replace("\\\n", " ")
    line = next(ln for ln in out.splitlines() if " train --config " in ln)
    assert ("--background 0.2" in line) == bool(share) and ("--background" in line) == bool(share)


def test_the_default_training_config_keeps_background_off():
    root = Path(__file__).resolve().parents[2]
    assert load_train_config(root / "configs" / "train-default.yaml").background == 0.0
