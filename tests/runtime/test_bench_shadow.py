"""`defectgate bench --shadow B`: the line with and without a candidate in shadow mode, in one run
(the figures are the bench's job; here: both variants ran, the shadow judged parts, nothing was lost)."""

from __future__ import annotations

import json

from defectgate.cli import main
from test_shadow import _with_thresholds


def test_bench_runs_the_line_with_and_without_the_shadow(tiny_bundle, tmp_path, capsys):
    a = _with_thresholds(tiny_bundle, tmp_path / "A", "v0001", 0.95, 0.95)
    b = _with_thresholds(tiny_bundle, tmp_path / "B", "v0002", 0.6, 0.3)
    out = tmp_path / "bench.json"
    assert main(["bench", "--model", str(a), "--shadow", str(b), "--frames", "40", "--rounds", "1",
                 "--line-rate", "40", "--threads", "1", "--out", str(tmp_path / "work"), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "with shadow" in text and "live latency p99 ms" in text and "fire error p99 ms" in text
    r = json.loads(out.read_text())
    without, with_ = r["best"]["without"], r["best"]["with"]
    assert "error" not in without and "error" not in with_
    assert without["parts"] == with_["parts"] == 40 and without["fires"] == with_["fires"] == 40
    assert without["shadow_parts"] is None and with_["shadow_parts"] + with_["shadow_frames_skipped"] >= 40 - 1
    assert with_["shadow_parts"] > 0 and r["machine"]


def test_bench_shadow_refuses_a_folder_that_is_not_a_bundle(tiny_bundle, tmp_path, capsys):
    assert main(["bench", "--model", str(tiny_bundle), "--shadow", str(tmp_path), "--out", str(tmp_path / "w")]) == 2
    assert "not a bundle folder" in capsys.readouterr().err
