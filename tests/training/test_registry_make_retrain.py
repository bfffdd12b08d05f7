"""`make retrain` on synthetic data: data -> train -> evaluate -> export -> promote, with the gate
decision printed (issue 4's done-when). Tiny settings: 24 images, 1 epoch, 64 px."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_retrain_runs_the_gated_chain(tmp_path):
    if not (ROOT / ".venv" / "bin" / "defectgate").exists():
        pytest.skip("make targets use .venv (make setup)")
    # a dataset increment such as the QA app exports: make retrain merges it into the training data
    increment = tmp_path / "qa-v0001"
    subprocess.run([str(ROOT / ".venv" / "bin" / "defectgate"), "data", "synth", "--out", str(increment),
                    "--images", "6", "--seed", "99"], check=True, capture_output=True)
    args = [f"RETRAIN_DIR={tmp_path / 'retrain'}", f"REGISTRY={tmp_path / 'registry'}", "SYNTH_IMAGES=24",
            "EPOCHS=1", "IMGSZ=64", f"QA_EXPORTS={increment}"]
    out = subprocess.run(["make", "-s", "retrain", *args], cwd=ROOT, capture_output=True, text=True, timeout=900,
                         env={**os.environ, "YOLO_OFFLINE": "1", "MPLBACKEND": "Agg"})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "PROMOTED" in out.stdout and "escape rate" in out.stdout
    assert (tmp_path / "registry" / "current" / "model.json").is_file()
    assert (tmp_path / "retrain" / "eval-pt.json").is_file()
    merged = tmp_path / "retrain" / "merged"
    assert len(list((merged / "images").rglob("*.png"))) == 24 + 6  # base + increment, nothing lost
    # trained on the merged set
    assert str(merged / "data.yaml") in (tmp_path / "retrain" / "train" / "config.yaml").read_text()
    assert (tmp_path / "retrain" / "plots" / "pr_curves.png").is_file()
    # the same candidate again is not worse than itself: the gate lets it through as v0002
    again = subprocess.run(["make", "-s", "promote", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "v0002" in again.stdout
