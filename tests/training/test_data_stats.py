"""`defectgate data stats`: counts agree with what synth wrote; the histogram accounts for every box."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from defectgate.cli import main as cli
from defectgate_training.data.synth import synthesize


def test_stats_agree_with_the_manifest(tmp_path: Path, capsys):
    man = synthesize(tmp_path / "ds", 16, seed=9, ng_rate=0.6, hw=(64, 96), val_frac=0.25)
    assert cli(["data", "stats", str(tmp_path / "ds"), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    for split in ("train", "val"):
        for key in ("images", "ok", "ng", "boxes"):
            assert st["splits"][split][key] == man["splits"][split][key]
    assert {n: v["boxes"] for n, v in st["per_class"].items()} == man["boxes_per_class"]
    assert {n: sum(h) for n, h in st["box_size_histogram"].items()} == man["boxes_per_class"]
    assert st["image_sizes"] == {"96x64": 16}
    assert st["totals"]["ok"] + st["totals"]["ng"] == 16
    assert all(v["images"] <= v["boxes"] for v in st["per_class"].values())

    assert cli(["data", "stats", str(tmp_path / "ds")]) == 0
    text = capsys.readouterr().out
    assert "scratch" in text and "96x64 (16)" in text and "total" in text


def test_stats_counts_bad_lines_instead_of_failing(tmp_path: Path, capsys):
    synthesize(tmp_path / "ds", 4, seed=1, ng_rate=1.0, hw=(64, 96), val_frac=0.25)
    lbl = next((tmp_path / "ds" / "labels" / "train").glob("*.txt"))
    lbl.write_text(lbl.read_text() + "8 0.5 0.5 0.1 0.1\n")
    assert cli(["data", "stats", str(tmp_path / "ds"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["invalid_label_lines"] == 1


NEU = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets" / "neu-det"


@pytest.mark.skipif(not NEU.is_dir(), reason="../shared/datasets/neu-det is not present on this machine")
def test_neu_det_stats(capsys):
    assert cli(["data", "stats", str(NEU), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["totals"]["images"] == 1439 and st["totals"]["ok"] == 0  # every NEU image has a defect
    assert st["image_sizes"] == {"200x200": 1439} and len(st["classes"]) == 6
    assert st["unreadable_images"] == 0 and st["invalid_label_lines"] == 0
