"""`make demo-plc` on the tiny model: the simulated PLC (`defectgate plc-sim`, its own process) owns
the ejector, the station runs configs/plc-station.yaml, and the reconciliation of the PLC's ejected
parts with the station's archive passes, in numbers and part by part."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from line_helpers import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_make_demo_plc_reconciles_the_plcs_rejects_with_the_stations_verdicts(tiny_bundle, tmp_path):
    pytest.importorskip("pymodbus", reason="needs the [station] extra")
    dg = Path(sys.executable).parent / "defectgate"
    if shutil.which("make") is None or not dg.exists():
        pytest.skip("needs make and the defectgate command next to this Python")
    out = tmp_path / "demo-plc"
    # -o setup: this test runs inside the installed environment; it must never (re)install it
    cmd = ["make", "-s", "-o", "setup", "demo-plc", f"PY={sys.executable}", f"DG={dg}", f"VENV={tmp_path / 'no-venv'}",
           f"DEMO_PLC_BUNDLE={tiny_bundle}", f"DEMO_PLC_DIR={out}", "DEMO_PLC_PARTS=15", f"DEMO_PLC_PORT={free_port()}",
           "DEMO_PLC_ARGS=--set model.threads=1"]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "RECONCILED" in res.stdout and "PLC ejected vs station" in res.stdout
    r = json.loads((out / "reconcile.json").read_text())
    assert r["reconciled"] and r["plc_parts"] == r["station_parts"] == 15 and not r["mismatches"]
    assert r["plc_ejected"] == r["station"]["ng"] + r["station"]["ok_undelivered"] + r["station"]["not_judged"]
    plc = json.loads((out / "plc.json").read_text())
    assert len(plc["decisions"]) == 15 and plc["in_register"] == 0
