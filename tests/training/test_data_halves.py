"""`defectgate data halves`: two disjoint, stratified halves of a split (calibrate on one, gate on the
other), written as list files over the original images; all or nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from defectgate.cli import main as cli
from defectgate_training.data.layout import label_path_for, list_split_images, load_data_yaml, read_label_rows


def test_halves_are_disjoint_cover_the_split_and_keep_ok_and_ng_in_both(synth_data, tmp_path):
    out = tmp_path / "halves"
    assert cli(["data", "halves", str(synth_data), "--split", "val", "--out", str(out), "--seed", "1"]) == 0
    spec = load_data_yaml(synth_data)
    val = set(list_split_images(spec, "val"))
    calib = set(list_split_images(load_data_yaml(out / "calib.yaml"), "val"))
    gate = set(list_split_images(load_data_yaml(out / "gate.yaml"), "val"))
    assert calib and gate and not calib & gate and calib | gate == val
    assert abs(len(calib) - len(gate)) <= 2
    for half in (calib, gate):  # the synthetic val split has OK and NG parts: both halves get some
        ng = [bool(read_label_rows(label_path_for(p), len(spec.names))) for p in half]
        assert any(ng) and not all(ng)
    doc = yaml.safe_load((out / "gate.yaml").read_text())
    assert doc["names"] == {i: n for i, n in enumerate(spec.names)} and doc["train"]
    again = tmp_path / "again"
    cli(["data", "halves", str(synth_data), "--out", str(again), "--seed", "1"])
    assert (again / "gate.txt").read_text() == (out / "gate.txt").read_text(), "seeded: the same halves twice"


def test_too_small_a_split_is_refused_and_nothing_is_written(tmp_path, capsys):
    ds = tmp_path / "tiny"
    (ds / "images" / "val").mkdir(parents=True)
    (ds / "labels" / "val").mkdir(parents=True)
    import numpy as np
    import cv2

    for i in range(3):
        cv2.imwrite(str(ds / "images" / "val" / f"{i}.png"), np.zeros((8, 8, 3), np.uint8))
    (ds / "data.yaml").write_text(yaml.safe_dump({"path": str(ds), "val": "images/val", "names": {0: "x"}}))
    out = tmp_path / "halves"
    assert cli(["data", "halves", str(ds), "--out", str(out)]) == 2
    assert "has 3 images" in capsys.readouterr().err and not out.exists()
