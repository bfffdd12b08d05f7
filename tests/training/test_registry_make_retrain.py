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
    args = [f"RETRAIN_DIR={tmp_path / 'retrain'}", f"REGISTRY={tmp_path / 'registry'}", "SYNTH_IMAGES=24",
            "EPOCHS=1", "IMGSZ=64"]
    out = subprocess.run(["make", "-s", "retrain", *args], cwd=ROOT, capture_output=True, text=True, timeout=900,
                         env={**os.environ, "YOLO_OFFLINE": "1", "MPLBACKEND": "Agg"})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "PROMOTED" in out.stdout and "escape rate" in out.stdout
    assert (tmp_path / "registry" / "current" / "model.json").is_file()
    assert (tmp_path / "retrain" / "eval-pt.json").is_file()
    assert (tmp_path / "retrain" / "plots" / "pr_curves.png").is_file()
    # the same candidate again is not worse than itself: the gate lets it through as v0002
    again = subprocess.run(["make", "-s", "promote", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "v0002" in again.stdout
