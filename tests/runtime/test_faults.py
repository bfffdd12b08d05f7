"""Bad input and faults: the station keeps running or stops safely with a clear message, rejects
what it could not judge, raises the alarm, and loses no result row already accepted."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from station_helpers import make_bundle, station_cfg
from defectgate.errors import BackendError
from defectgate.station import build_station

ALL_OK = "decision.ignore_classes=[scratch, dent, crack, stain]"


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "defectgate.cli", *args], capture_output=True, text=True,
                          timeout=120, **kw)


def _config_file(tmp_path: Path, bundle: Path, uri: str, **sections) -> Path:
    cfg = {"station": {"name": "fault-line", "run_dir": str(tmp_path / "station")},
           "source": {"uri": uri}, "model": {"bundle": str(bundle), "backend": "onnxruntime", "threads": 1},
           "conveyor": {"belt_speed_mm_s": 600, "camera_to_ejector_mm": 400}}
    for key, value in sections.items():
        cfg.setdefault(key, {}).update(value)
    path = tmp_path / "station.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_unknown_key_and_impossible_geometry_exit_2_with_one_line(tmp_path, tiny_bundle):
    path = _config_file(tmp_path, tiny_bundle, "synthetic://conveyor?parts=2", conveyor={"belt_sped": 5})
    res = _cli("run", "--config", str(path))
    assert res.returncode == 2 and "conveyor.belt_sped: unknown key" in res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    path = _config_file(tmp_path, tiny_bundle, "synthetic://conveyor?parts=2", conveyor={"camera_to_ejector_mm": -50})
    res = _cli("run", "--config", str(path))
    assert res.returncode == 2 and "downstream of the camera" in res.stderr and "Traceback" not in res.stderr


def test_a_model_file_that_fails_to_load_is_a_clear_error(tmp_path, tiny_onnx):
    bundle = make_bundle(tiny_onnx, tmp_path / "broken")
    (bundle / "model.onnx").write_bytes(b"not an onnx graph at all")
    from defectgate.bundle import read_sidecar, sha256_file, write_sidecar

    side = read_sidecar(bundle / "model.json")
    write_sidecar(bundle, side.model_copy(update={"sha256": sha256_file(bundle / "model.onnx")}))
    res = _cli("run", "--config", str(_config_file(tmp_path, bundle, "synthetic://conveyor?parts=2")))
    assert res.returncode == 2 and "onnxruntime could not load the model" in res.stderr
    assert "Traceback" not in res.stderr


def test_inference_raising_rejects_those_parts_and_the_line_goes_on(tiny_bundle, tmp_path):
    uri = "synthetic://conveyor?parts=9&seed=1&width=96&height=72&realtime=0"
    built = build_station(station_cfg(tiny_bundle, tmp_path, uri, ALL_OK, "pipeline.overflow=block"))
    real = built.station.inspector.infer
    calls = {"n": 0}

    def flaky(batch):
        calls["n"] += 1
        if calls["n"] % 3 == 0:
            raise BackendError("onnxruntime inference failed: simulated engine fault")
        return real(batch)

    built.station.inspector.infer = flaky
    stats = built.station.run()
    built.close()
    failed = {v.part_id for v in stats.verdicts if v.failsafe}
    assert len(stats.verdicts) == 9 and stats.inference_failures == 3 and len(failed) == 3
    assert set(stats.fired) == failed, "exactly the unjudged parts are rejected"
    rows = sqlite3.connect(built.archive.db_path).execute(
        "SELECT COUNT(*) FROM parts WHERE failsafe = 1 AND reasons LIKE '%inference_failed%'").fetchone()
    assert rows == (3,)


def test_inference_stall_raises_the_alarm_and_late_parts_are_rejected(tiny_bundle, tmp_path):
    uri = "synthetic://conveyor?parts=8&seed=1&width=96&height=72"  # real time: 5 parts/s
    built = build_station(station_cfg(tiny_bundle, tmp_path, uri, ALL_OK, "pipeline.watchdog_s=0.2",
                                      "conveyor.camera_to_ejector_mm=300"))
    real = built.station.inspector.infer
    calls = {"n": 0}

    def stalling(batch):
        calls["n"] += 1
        if calls["n"] == 2:
            time.sleep(1.0)  # the engine hangs for longer than the part needs to reach the ejector
        return real(batch)

    built.station.inspector.infer = stalling
    stats = built.station.run()
    built.close()
    assert built.alarm.raised.get("inference_stalled") == 1
    assert not built.alarm.on, "the alarm clears once inference moves again"
    late = {v.part_id for v in stats.verdicts if "deadline_missed" in v.reasons}
    assert 1 in late and late <= set(stats.fired), "the stalled part was rejected although it was OK"
    unjudged = set(stats.captured) - {v.part_id for v in stats.verdicts}  # dropped while inference hung
    assert len(unjudged) == stats.frames_dropped and unjudged <= set(stats.fired)
    assert len(stats.captured) == 8


def test_a_stream_of_corrupt_frames_is_skipped(tiny_bundle, tmp_path):
    folder = tmp_path / "shift"
    folder.mkdir()
    for i in range(12):
        path = folder / f"f{i:02d}.png"
        if i % 3 == 0:
            cv2.imwrite(str(path), np.full((72, 96, 3), 90, np.uint8))
        else:
            path.write_bytes(os.urandom(200))  # garbage that claims to be a PNG
    built = build_station(station_cfg(tiny_bundle, tmp_path, f"file://{folder}", "pipeline.overflow=block"))
    stats = built.station.run()
    built.close()
    assert len(stats.verdicts) == 4 and built.station.source.corrupt == 8


def _wait_rows(db: Path, n: int, timeout: float = 60) -> int:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if db.exists():
            try:
                with sqlite3.connect(db, timeout=1) as conn:
                    count = conn.execute("SELECT COUNT(*) FROM parts").fetchone()[0]
                if count >= n:
                    return count
            except sqlite3.OperationalError:
                pass  # table not created yet
        time.sleep(0.1)
    raise AssertionError(f"station did not write {n} rows within {timeout} s")


@pytest.mark.slow
def test_kill_9_leaves_a_readable_log_and_sigterm_stops_cleanly(tiny_bundle, tmp_path):
    uri = "synthetic://conveyor?parts=100000&seed=1&width=96&height=72"
    path = _config_file(tmp_path, tiny_bundle, uri, conveyor={"belt_speed_mm_s": 1200},
                        decision={"thresholds": {"scratch": 0.0}})  # all NG: images written too
    db = tmp_path / "station" / "archive" / "parts.sqlite"
    env = dict(os.environ, PYTHONUNBUFFERED="1")

    proc = subprocess.Popen([sys.executable, "-m", "defectgate.cli", "run", "--config", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    _wait_rows(db, 15)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = conn.execute("SELECT part_id, verdict FROM parts ORDER BY part_id").fetchall()
        assert len(rows) >= 15 and [r[0] for r in rows] == list(range(len(rows))), "no gaps in accepted rows"
        assert conn.execute("SELECT ended_utc FROM runs").fetchone()[0] is None  # it was killed
    killed_rows = len(rows)

    proc = subprocess.Popen([sys.executable, "-m", "defectgate.cli", "run", "--config", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    _wait_rows(db, killed_rows + 10)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert "line report" in out
    with sqlite3.connect(db) as conn:
        run = conn.execute("SELECT run_id, ended_utc, report FROM runs ORDER BY started_utc DESC LIMIT 1").fetchone()
        assert run[1] is not None, "a clean stop closes its run row"
        parts = conn.execute("SELECT COUNT(*) FROM parts WHERE run_id = ?", (run[0],)).fetchone()[0]
    report = __import__("json").loads(run[2])
    assert parts == report["parts"] == len({*range(report["parts"])}), "every captured part has its row"


def test_every_example_station_config_loads():
    from defectgate.config import load_config

    configs = sorted(Path(__file__).resolve().parents[2].glob("configs/*station*.yaml"))
    assert len(configs) >= 3
    for path in configs:
        load_config(path)  # raises ConfigError naming the key if an example drifted from the schema


def test_replay_command_judges_every_recorded_frame(tiny_bundle, tmp_path):
    folder = tmp_path / "recorded"
    folder.mkdir()
    for i in range(7):
        cv2.imwrite(str(folder / f"p{i}.png"), np.full((72, 96, 3), 30 * i, np.uint8))
    path = _config_file(tmp_path, tiny_bundle, "synthetic://conveyor?parts=1")
    res = _cli("replay", "--config", str(path), "--source", f"file://{folder}", "--json")
    assert res.returncode == 0, res.stderr[-2000:]
    report = __import__("json").loads(res.stdout[res.stdout.index("{"):])
    assert report["parts"] == 7 and report["frames_dropped"] == 0 and report["archive"]["rows"] == 7
    res = _cli("replay", "--config", str(path), "--source", "usb://0")
    assert res.returncode == 2 and "replay reads file://" in res.stderr


def test_camera_unplugged_mid_run_raises_the_alarm_and_the_line_resumes(tiny_bundle, tmp_path):
    from test_sources import _opener

    from defectgate.clock import MonotonicClock
    from defectgate.config import SourceSection
    from defectgate.sources.camera import CameraSource

    frame = np.full((48, 64, 3), 60, np.uint8)  # the test camera's own size (it streams 48x64 afterwards)
    opener, world = _opener([frame] * 10 + ["unplug"] + [frame] * 10)
    cfg = station_cfg(tiny_bundle, tmp_path, "usb://0", ALL_OK, "pipeline.max_parts=40", "pipeline.watchdog_s=0.2")
    camera = CameraSource(SourceSection(uri="usb://0", reconnect_backoff_s=0.3, reconnect_backoff_max_s=0.6),
                          MonotonicClock(), opener=opener)
    built = build_station(cfg, source=camera)
    stats = built.station.run()
    built.close()
    assert camera.disconnects == 1 and camera.reconnects == 1
    assert built.alarm.raised.get("camera_lost") == 1 and not built.alarm.on, "raised while unplugged, cleared after"
    assert len(stats.captured) == 40 and stats.inference_failures == 0
