"""The spine, end to end, through the real command line: synthesize parts -> train a tiny model
(1 epoch) -> export the bundle -> run the station on a synthetic conveyor -> check the report against
the archive and the ejector's own log. A 1-epoch model judges badly; what is checked here is that every
stage is wired and that the line's bookkeeping is right, not the model's accuracy (make demo and docs/
cover that)."""

import json
import os
import sqlite3
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def dg(*args, cwd=None):
    env = {**os.environ, "YOLO_OFFLINE": "1", "MPLBACKEND": "Agg"}
    out = subprocess.run([sys.executable, "-m", "defectgate.cli", *map(str, args)], capture_output=True, text=True,
                         cwd=cwd, env=env, timeout=900)
    assert out.returncode == 0, f"defectgate {args[0]} failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}"
    return out


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    dg("data", "synth", "--out", root / "data", "--images", 24, "--seed", 3, "--imgsz", 96, 128)
    dg("train", "--data", root / "data" / "data.yaml", "--epochs", 1, "--imgsz", 96, "--batch", 8,
       "--out", root / "train", "--seed", 0, "--workers", 0)
    assert (root / "train" / "weights" / "best.pt").is_file()
    dg("export", "--weights", root / "train" / "weights" / "best.pt", "--data", root / "data" / "data.yaml",
       "--out", root / "bundle")
    return root


# the bundle's calibrated thresholds (a 1-epoch model may reject few parts or none), and every detection
# rejecting (every part the model sees anything on is fired at): between them both counts are exercised
THRESHOLDS = {"calibrated": "{}", "zero": "{scratch: 0.0, dent: 0.0, crack: 0.0, stain: 0.0}"}


@pytest.mark.parametrize("thresholds", list(THRESHOLDS))
def test_station_runs_on_the_exported_bundle_and_the_report_matches_the_archive_and_the_ejector(bundle, tmp_path,
                                                                                                 thresholds):
    """Three accounts of one run, kept apart: the line report (the station's counters), the archive
    (a row per part, a row per pulse, written by its own thread) and the simulated ejector's own log of
    the pulses it received. Each count in the report is recomputed from the other two."""
    run_dir = tmp_path / "station"
    ejector_log = tmp_path / "ejector.jsonl"
    out = dg("run", "--config", "configs/demo-station.yaml", "--json",
             "--set", f"model.bundle={bundle / 'bundle'}",
             "--set", "source.uri=synthetic://conveyor?parts=30&seed=5&width=128&height=96",
             "--set", "conveyor.belt_speed_mm_s=2400",  # a part every 50 ms keeps the test short
             "--set", f"station.run_dir={run_dir}",
             "--set", "archive.ok_sample_rate=0",
             "--set", f"decision.thresholds={THRESHOLDS[thresholds]}",
             "--set", f"actuator.options={{log: {ejector_log}}}")
    report = json.loads(out.stdout[out.stdout.index("{"):])
    assert report["latency_ms"]["p50"] > 0 and report["fps"] > 0
    assert report["backend"].startswith("onnxruntime")
    (run,) = [p for p in run_dir.iterdir() if p.name != "archive"]
    assert json.loads((run / "report.json").read_text()) == report

    db = sqlite3.connect(run_dir / "archive" / "parts.sqlite")
    rows = db.execute("SELECT part_id, verdict, image_path, truth_ng FROM parts ORDER BY part_id").fetchall()
    assert [r[0] for r in rows] == list(range(30)) == list(range(report["parts"]))  # one row per part
    ng_rows = {r[0] for r in rows if r[1] == "NG"}
    assert all(r[2] and (run_dir / "archive" / r[2]).is_file() for r in rows if r[1] == "NG")  # NG images kept
    assert all(r[2] is None for r in rows if r[1] == "OK")
    assert report["verdict_ng"] == len(ng_rows)

    fires = db.execute("SELECT part_id, fired, error FROM fires").fetchall()
    fired = [f[0] for f in fires if f[1] is not None]
    missed = {f[0] for f in fires if f[1] is None and f[2] == "fire window missed"}
    assert len(fired) == len(set(fired)), "no part fired twice"
    assert set(fired) == ng_rows - missed, "exactly the NG parts were fired at (bar missed windows)"
    assert report["missed_fires"] == len(missed)
    # the ejector's own log: as many pulses as the station says it rejected, at the times it recorded
    pulses = [json.loads(line) for line in ejector_log.read_text().splitlines()]
    assert report["rejected"] == len(fired) == len(pulses)
    if thresholds == "zero":
        assert len(pulses) > 0, "the check above was not vacuous: the ejector fired"
    station_times = sorted(f[1] for f in fires if f[1] is not None)
    ejector_times = sorted(p["t"] for p in pulses)
    assert all(abs(e - t) < 0.005 for e, t in zip(ejector_times, station_times)), "each pulse when the station fired"
    assert {p["duration_s"] for p in pulses} <= {0.03}  # the configured pulse_ms
    # escapes and overkills from the archive's truth and fire rows, not from the report's counters
    truth = {r[0]: bool(r[3]) for r in rows}
    assert None not in {r[3] for r in rows}  # the synthetic conveyor knows every part's truth
    assert report["ng_truth"] == sum(truth.values())
    assert report["escapes"] == sum(1 for p, ng in truth.items() if ng and p not in fired)
    assert report["overkills"] == sum(1 for p, ng in truth.items() if not ng and p in fired)
