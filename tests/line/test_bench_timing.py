"""The bench's fire-time measurement (issue #23): the pipelined station under full inference load
fires every part, timed by the station's thread or by the timing process, at least `--pulses` of
them. The figures are the bench's to print (docs/line-integration.md), never asserted here."""

from __future__ import annotations

import subprocess
import sys

import pytest

from defectgate.bench_workers import make_frames, worker_ours


@pytest.mark.slow
@pytest.mark.parametrize("timing", ["process", "thread"])
def test_every_part_is_fired_or_counted_missed_and_the_figure_names_its_timing(tiny_bundle, tmp_path, timing):
    frames = make_frames(tmp_path / "frames", 12, hw=(72, 96))
    r = worker_ours(str(tiny_bundle), str(frames), "onnxruntime", 1, timing=timing, pulses=40)
    assert r["timing"] == timing
    assert r["fires"] + r["missed_fires"] == 48, "12 frames x 4 loops: every one of the 40+ parts pulsed once"
    assert r["fires"] > 0 and r["fire_error_ms_p99"] == r["fire_error_ms_p99"], "a number, not NaN"


def test_the_bench_refuses_zero_pulses(tiny_bundle):
    res = subprocess.run([sys.executable, "-m", "defectgate.cli", "bench", "--model", str(tiny_bundle), "--pulses", "0",
                          "--timing", "process"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "--pulses 0" in res.stderr and "Traceback" not in res.stderr
