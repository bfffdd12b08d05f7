"""`defectgate bench` end to end on the tiny model: the JSON holds every figure the issue asks for,
each named with its engine and precision. Speed is measured here, never asserted."""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_bench_json_has_every_figure(tiny_bundle, tmp_path):
    out = tmp_path / "bench.json"
    res = subprocess.run([sys.executable, "-m", "defectgate.cli", "bench", "--model", str(tiny_bundle),
                          "--frames", "12", "--rounds", "1", "--threads", "1", "--out", str(tmp_path / "work"),
                          "--json", str(out), "--soak-minutes", "0.05"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    r = json.loads(out.read_text())
    for key in ("raw_ms_p50", "pipeline_ms_p50", "overhead_ratio", "throughput_ratio", "fire_error_ms_p99",
                "rss_mb", "throughput_fps", "fire_error_ms_p50"):
        assert isinstance(r[key], (int, float)) and r[key] == r[key], key  # a number, not NaN
    assert r["engine"].startswith("onnxruntime") and r["precision"] == "fp32"
    assert r["overhead_ratio"] == pytest.approx(r["pipeline_ms_p50"] / r["raw_ms_p50"], rel=1e-2)
    assert r["machine"]["cpus"] >= 1
    if "ultralytics_ms_p50" in r:
        assert r["figures"]["ultralytics_ms_p50"] == {"engine": "ultralytics+onnxruntime", "precision": "fp32",
                                                      "what": "YOLO.predict: its preprocess + infer + NMS"}
    assert r["skipped"].get("ultra_openvino") == "no --weights given"
    assert r["soak"]["parts"] > 0 and "rss_slope_mb_per_min" in r["soak"]
    # the samples and the peak (ru_maxrss, read after the last sample) in the same unit: no sample above it
    assert r["soak"]["rss_mb_end"] <= r["soak"]["rss_mb_peak"] + 0.1, r["soak"]
    assert set(r["machine"]["cpu_features"]) == {"avx2", "avx512", "vnni", "bf16", "amx"}
    if shutil.which("lscpu") and platform.machine() == "x86_64":  # the family and model tell one EPYC from another
        assert r["machine"]["CPU family"].isdigit() and r["machine"]["Model"].isdigit(), r["machine"]
        assert f"family {r['machine']['CPU family']} model {r['machine']['Model']}" in res.stdout
    (row,) = r["matrix"]  # one configuration at one size
    assert row["config"] == "onnxruntime" and row["size"] == "bundle" and row["views"] == 1
    for key in ("fixed_ms_p50", "engine_busy", "throughput_ratio"):
        assert isinstance(row[key], (int, float)) and row[key] == row[key], key
    assert 0 < row["engine_busy"] <= 1 and row["fixed_ms_p50"] < row["pipeline_ms_p50"]
    (steal,) = row["steal_s_rounds"]  # the vCPU steal over the pipelined run of each round (Linux: a number)
    assert steal is not None and steal >= 0
    assert row["fire_error_ms_p99_rounds"] == [row["fire_error_ms_p99"]]  # one round: the best one
    assert "overhead" in res.stdout and "/u-ov-int8" in res.stdout  # the one table
    # where the CPU went in the station, by thread role, and the engine's CPU per inference alone
    cpu = row["cpu_ms_per_part"]
    assert set(cpu) == {"engine", "capture", "decide", "timing", "other", "total"} and min(cpu.values()) >= 0
    assert row["engine_cpu_ms_alone_p50"] > 0 and row["cpus"] == r["machine"]["cpus"]
    assert "CPU ms per part" in res.stdout and "parts/s" in res.stdout


def test_bench_refuses_bad_arguments(tmp_path):
    res = subprocess.run([sys.executable, "-m", "defectgate.cli", "bench", "--model", str(tmp_path), "--frames", "3"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "--frames 3" in res.stderr and "Traceback" not in res.stderr
    res = subprocess.run([sys.executable, "-m", "defectgate.cli", "bench", "--model", str(tmp_path / "nope")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "model bundle not found" in res.stderr


@pytest.mark.parametrize("args, message", [
    (["--ours", "onnxruntime@2"], "--ours 'onnxruntime@2': use one of"),
    (["--ours", "openvino,tflite"], "--ours 'tflite'"),
    (["--sizes", "bundle,650"], "--sizes '650': use 'bundle' or a pixel size that is a multiple of 32"),
])
def test_bench_refuses_configurations_it_cannot_run(tiny_bundle, tmp_path, args, message):
    res = subprocess.run([sys.executable, "-m", "defectgate.cli", "bench", "--model", str(tiny_bundle), *args,
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr


def test_cpu_features_name_the_instruction_sets_int8_and_bf16_depend_on():
    from defectgate.bench_workers import cpu_features

    assert cpu_features({"avx2", "fma"}) == {"avx2": True, "avx512": False, "vnni": False, "bf16": False, "amx": False}
    zen4 = cpu_features({"avx2", "avx512f", "avx512_vnni", "avx512_bf16"})
    assert zen4 == {"avx2": True, "avx512": True, "vnni": True, "bf16": True, "amx": False}
    assert cpu_features({"avx2", "avx_vnni"})["vnni"] and cpu_features({"amx_tile", "amx_bf16"})["bf16"]


def test_our_configurations_name_bundle_backend_and_streams():
    from defectgate.bench import _our_config

    assert _our_config("openvino") == ("fp32", "openvino", 1)
    assert _our_config("openvino-int8@2") == ("int8", "openvino", 2)
    assert _our_config("openvino-int8:bf16") == ("int8", "openvino:bf16", 1)
    assert _our_config("onnxruntime") == ("fp32", "onnxruntime", 1)


def test_old_parts_fold_into_counters_and_the_report_still_adds_up():
    """A long run keeps per-part detail for recent parts only (flat memory in the soak); the line
    report must give the same totals as if nothing had been folded."""
    from defectgate.pipeline import RunStats
    from defectgate.report import line_report

    def run(fold_every: int | None) -> dict:
        s = RunStats()
        for part in range(300):
            truth = part % 3 == 0  # every third part really NG
            s.captured[part] = truth
            if part % 7 != 0:  # every seventh part never got a verdict (dropped frame)
                s.judged[part] = None
            if truth or part % 10 == 0:  # rejects: all true NG (some judged, some fail-safe) + overkills
                s.fired[part] = float(part)
            if fold_every and part % fold_every == 0:
                s.fold(keep=25)
        s.t_end = 1.0
        return line_report(s)

    full, folded = run(None), run(50)
    for key in ("parts", "ng_truth", "rejected", "escapes", "overkills", "unjudged_parts", "missed_deadlines"):
        assert folded[key] == full[key], key
    assert full["parts"] == 300 and full["escapes"] == 0 and full["overkills"] == 20


def test_cpu_steal_is_read_from_the_cpu_line_and_absent_without_proc_stat(tmp_path):
    import os

    from defectgate.bench_workers import cpu_steal_s

    stat = tmp_path / "stat"
    #              user nice system idle iowait irq softirq steal guest guest_nice
    stat.write_text("cpu  88093 12886 19923 443410 1615 0 307 8095 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n")
    assert cpu_steal_s(stat) == pytest.approx(8095 / os.sysconf("SC_CLK_TCK"))
    stat.write_text("intr 1 2 3\n")
    assert cpu_steal_s(stat) is None
    assert cpu_steal_s(tmp_path / "missing") is None


def test_a_worker_that_refuses_reports_its_one_line_not_a_traceback(tmp_path):
    from defectgate.bench import _spawn

    frames = tmp_path / "frames"
    frames.mkdir()
    res = _spawn(["ours", str(tmp_path / "no-such-bundle"), str(frames), "onnxruntime", "1"], timeout=120)
    assert res["error"].startswith("BundleError: ") and "no-such-bundle" in res["error"], res
    assert "Traceback" not in res["error"] and "File " not in res["error"]


def test_a_crashed_worker_reports_the_exception_line_of_its_traceback():
    from defectgate.bench import worker_error

    trace = ('Traceback (most recent call last):\n  File "x.py", line 3, in <module>\n    raise ValueError("boom")\n'
             "ValueError: boom\n")
    assert worker_error("", trace, 1) == "ValueError: boom"
    assert worker_error("log line\n", "", 1) == "log line" and worker_error("", "", 9) == "exit 9"


def _precision_this_cpu_lacks() -> str:
    ov = pytest.importorskip("openvino")
    caps = list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    lacking = [p for p, cap in (("bf16", "BF16"), ("f16", "FP16")) if cap not in caps]
    if not lacking:
        pytest.skip(f"this CPU's OpenVINO runs bf16 and f16 natively ({caps}): nothing to refuse")
    return lacking[0]


@pytest.mark.slow
def test_a_configuration_refused_in_every_round_is_listed_with_its_reason(tiny_bundle, tmp_path):
    compute = _precision_this_cpu_lacks()
    out = tmp_path / "bench.json"
    res = subprocess.run([sys.executable, "-m", "defectgate.cli", "bench", "--model", str(tiny_bundle),
                          "--ours", f"onnxruntime,openvino:{compute}", "--frames", "12", "--rounds", "1",
                          "--threads", "1", "--out", str(tmp_path / "work"), "--json", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    r = json.loads(out.read_text())
    assert [row["config"] for row in r["matrix"]] == ["onnxruntime"]
    why = r["not_measured"][f"bundle ours:openvino:{compute}"]
    assert why.startswith("BackendError: ") and f"for {compute} inference" in why, why
    assert f"bundle ours:openvino:{compute}: not measured: BackendError: " in res.stdout


def test_the_table_shows_how_far_the_rounds_spread_each_ratio():
    from defectgate.bench import table

    row = {"imgsz": 192, "config": "openvino-int8", "engine": "openvino:CPU:int8", "precision": "int8",
           "raw_ms_p50": 4.2, "pipeline_ms_p50": 4.7, "fixed_ms_p50": 0.3, "overhead_ratio": 1.12,
           "throughput_fps": 150.0, "throughput_ratio": 0.63, "engine_busy": 0.99, "fire_error_ms_p50": 0.02,
           "fire_error_ms_p99": 0.5, "rss_mb": 260.0, "timing": "thread", "fires": 200, "missed_fires": 0,
           "ultralytics": {"ultra_openvino_int8": {"ms_p50": 4.2, "over_ours": 1.1,
                                                   "over_ours_rounds": [0.9, 1.2, 1.1]}}}
    r = {"machine": {"Model name": "AMD EPYC", "CPU family": "25", "Model": "1", "cpus": 2,
                     "cpu_features": {"avx2": True}}, "matrix": [row]}
    text = table(r)
    assert "AMD EPYC family 25 model 1 (2 CPUs; avx2)" in text
    assert "ratios per round 192 px openvino-int8: u-ov-int8 0.9-1.2" in text
    row["ultralytics"]["ultra_openvino_int8"]["over_ours_rounds"] = [1.1]  # one round: no spread to show
    assert "ratios per round" not in table(r)


def test_the_table_says_how_many_parts_per_second_the_stations_cpu_allows():
    from defectgate.bench import cpu_note

    row = {"imgsz": 192, "config": "openvino-int8", "cpus": 2, "engine_cpu_ms_alone_p50": 8.4,
           "cpu_ms_per_part": {"engine": 9.9, "capture": 0.35, "decide": 0.5, "timing": 0.75, "other": 0.1,
                               "total": 11.6}}
    note = cpu_note(row)
    assert "engine 9.90 in the station (8.40 alone)" in note and "timing 0.75" in note
    assert note.endswith("2 CPUs judge at most 172 parts/s")  # 2 x 1000 / 11.6
