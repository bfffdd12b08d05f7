"""The runtime benchmark behind `defectgate bench` and `make bench`.

Every engine is timed in its own subprocess (bench_workers.py), and the engines take turns in
alternating rounds: engines that share a process fight over threads and distort each other, and a
shared machine's load drifts. Our station's figures are its best round's; every ratio against
ultralytics is taken within one round (ours and theirs measured back to back) and the median over the
rounds is reported, so load drift between rounds cancels.

What is measured, per input size (the bundle's, and e.g. 640 px exported from the same weights):
  ours      each configuration in `ours`: onnxruntime, openvino (FP32), openvino-int8 (our NNCF INT8
            bundle); "@N" runs OpenVINO with N streams (model.streams), ":bf16" with bf16 compute
  ultra_onnx / ultra_openvino / ultra_openvino_int8
            ultralytics predict on our ONNX file, on its own OpenVINO FP32 export and on its own INT8
            (`int8=True`, NNCF, calibrated on `--data`) export of `--weights`
Bundles the run needs and was not given (another size, our INT8) are exported into `out_dir` once
(`defectgate export`, the [train] extra) and reused by later runs.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from .bench_workers import MemorySource, machine, make_frames, worker_main  # noqa: F401 (bench API)

ULTRA = {"ultra_onnx": ("ultralytics_ms_p50", "ultralytics+onnxruntime", "fp32"),
         "ultra_openvino": ("ultralytics_openvino_ms_p50", "ultralytics+openvino", "fp32"),
         "ultra_openvino_int8": ("ultralytics_openvino_int8_ms_p50", "ultralytics+openvino", "int8")}
INT8 = "openvino-int8"
SHORT = {"ultra_onnx": "u-onnx", "ultra_openvino": "u-ov", "ultra_openvino_int8": "u-ov-int8"}  # the table's names


def _spawn(args: list[str], timeout: float = 1800, env: dict[str, str] | None = None) -> dict:
    cmd = [sys.executable, "-m", "defectgate.bench", "worker", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        return {"error": worker_error(proc.stdout, proc.stderr, proc.returncode)}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def worker_error(stdout: str, stderr: str, returncode: int) -> str:
    """One line for a failed worker: the refusal it reported (a DefectgateError names the problem and
    the fix), else the last line of its traceback (the exception), not the frames above it."""
    lines = stdout.strip().splitlines()
    if lines and lines[-1].startswith("{"):
        try:
            return str(json.loads(lines[-1])["error"])
        except (ValueError, KeyError):
            pass
    tail = [line.strip() for line in (stderr or stdout).strip().splitlines() if line.strip()]
    return tail[-1] if tail else f"exit {returncode}"


def _run_script(script: str, what: str) -> str | None:
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        return f"{what} failed: " + " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-2:])
    return None


def export_ultralytics_openvino(weights: Path, imgsz: int, out: Path, int8: bool, data: str | None) -> Path | str:
    """ultralytics' own OpenVINO export (cached in `out`); returns the model folder or an error."""
    tag = "int8" if int8 else "fp32"
    dst = out / f"ultralytics_{tag}_{imgsz}_openvino_model"  # ultralytics knows the format by this suffix
    if (dst / "metadata.yaml").is_file():
        return dst
    if int8 and not data:
        return "int8 export needs --data (a dataset yaml for calibration)"
    script = (
        "import os, shutil, sys; os.environ.setdefault('YOLO_OFFLINE','1');"
        "from ultralytics import YOLO;"
        f"p = YOLO({str(weights)!r}).export(format='openvino', imgsz={imgsz}, int8={int8}, "
        + (f"data={data!r}, fraction=1.0, " if int8 else "") + "verbose=False);"
        f"shutil.rmtree({str(dst)!r}, ignore_errors=True); shutil.copytree(p, {str(dst)!r}); print(p)"
    )
    return _run_script(script, f"ultralytics {tag} export") or dst


def export_ours(weights: Path | None, data: str | None, imgsz: int, out: Path, fp32: Path | None,
                int8: bool) -> Path | str:
    """Our bundle at `imgsz` (FP32 from the weights, or the NNCF INT8 OpenVINO bundle of `fp32`), cached
    in `out`; the bundle folder or why it cannot be made here."""
    dst = out / (f"ours-int8-{imgsz}" if int8 else f"ours-fp32-{imgsz}")
    if (dst / "model.json").is_file():
        return dst
    if not _has("defectgate_training"):
        return "needs the [train] extra to export it (pip install 'defectgate[train]')"
    if int8:
        if not data or fp32 is None:
            return "our INT8 bundle needs --data (calibration images) and an FP32 bundle"
        script = ("from defectgate_training.openvino_int8 import export_openvino_int8;"
                  f"export_openvino_int8({str(fp32)!r}, {data!r}, {str(dst)!r}, calib_limit=300)")
        return _run_script(script, "INT8 export") or dst
    if weights is None:
        return "no --weights given"
    script = ("from defectgate_training.export import export_bundle;"
              f"export_bundle({str(weights)!r}, {str(dst)!r}, data={data!r}, imgsz={imgsz}, calibrate=False)")
    return _run_script(script, f"{imgsz} px export") or dst


def _our_config(spec: str) -> tuple[str, str, int]:
    """'openvino-int8@2' -> (which bundle: fp32 | int8, backend, streams)."""
    name, _, streams = spec.partition("@")
    which = "int8" if name.startswith(INT8) else "fp32"
    backend = "openvino" + name[len(INT8):] if which == "int8" else name
    return which, backend, int(streams or 1)


def _plan_size(size: int | None, b: Any, args: dict, out_dir: Path, frames_dir: Path, log) -> tuple[dict, dict]:
    """The engines to time at one input size (None: the bundle's own) and what cannot be timed, and why."""
    from .bundle import load_bundle

    weights, data, threads, int8_model = args["weights"], args["data"], args["threads"], args["int8"]
    imgsz = int(size or b.sidecar.input.imgsz[0])
    fp32: Path | str = b.root if size is None else export_ours(weights, data, imgsz, out_dir, None, False)
    bundles: dict[str, Path | str] = {"fp32": fp32}
    if any(_our_config(c)[0] == "int8" for c in args["ours"]):
        given = Path(int8_model) if int8_model and size is None else None
        bundles["int8"] = given or (export_ours(weights, data, imgsz, out_dir, fp32, True)
                                    if isinstance(fp32, Path) else f"no FP32 bundle at {imgsz} px: {fp32}")
    engines, skipped = {}, {}
    for spec in args["ours"]:
        which, backend, streams = _our_config(spec)
        path = bundles[which]
        if isinstance(path, str):
            skipped[f"ours:{spec}"] = path
            continue
        engines[f"ours:{spec}"] = ["ours", str(path), str(frames_dir), backend, str(threads), str(streams),
                                   args["timing"], str(args["pulses"])]
    if not _has("ultralytics"):
        return engines, {**skipped, **{k: "ultralytics not installed" for k in ULTRA}}
    if isinstance(fp32, Path):
        fb = load_bundle(fp32)
        onnx = fb.model_path if fb.model_path.suffix == ".onnx" else fb.root / "model.onnx"  # an IR keeps its ONNX
        conf = str(fb.sidecar.conf_threshold)
        if onnx.is_file():
            engines["ultra_onnx"] = ["ultra", str(onnx), str(frames_dir), str(imgsz), conf]
        else:
            skipped["ultra_onnx"] = f"no ONNX file in {fb.root}"
    for key, int8 in (("ultra_openvino", False), ("ultra_openvino_int8", True)):
        if weights is None:
            skipped[key] = "no --weights given"
            continue
        log(f"{imgsz} px: ultralytics OpenVINO {'INT8' if int8 else 'FP32'} export of {weights} ...")
        model = export_ultralytics_openvino(weights, imgsz, out_dir, int8, data)
        if isinstance(model, str):
            skipped[key] = model
        else:
            engines[key] = ["ultra", str(model), str(frames_dir), str(imgsz), str(b.sidecar.conf_threshold)]
    return engines, skipped


def run(bundle: Path, frames: int, backend: str, threads: int, rounds: int, weights: Path | None,
        data: str | None, out_dir: Path, soak_minutes: float = 0.0, log=print, *, ours: list[str] | None = None,
        sizes: list[int | None] | None = None, int8: str | None = None, isa: str = "", timing: str = "thread",
        pulses: int = 200) -> dict:
    """`ours`: our configurations (default: `backend` alone); `sizes`: input sizes, None for the
    bundle's own; `int8`: our INT8 bundle at the bundle's size (else exported when needed); `isa`: a
    oneDNN ISA cap (e.g. AVX2) for every worker, so that OpenVINO runs as on a CPU without AVX-512;
    `timing`: who times the pulses (the station's thread, or the timing process of issue #23), at least
    `pulses` of them per run (every part is fired)."""
    from .bundle import load_bundle

    b = load_bundle(bundle)
    env = {**os.environ, **({"ONEDNN_MAX_CPU_ISA": isa} if isa else {})}
    host = machine()  # load average at the start: this machine may be shared
    if isa:
        host["onednn_max_cpu_isa"] = isa
    frames_dir = make_frames(out_dir / "frames", frames)
    args = {"weights": weights, "data": data, "threads": threads, "int8": int8, "ours": ours or [backend],
            "timing": timing, "pulses": pulses}
    plans = {size: _plan_size(size, b, args, out_dir, frames_dir, log) for size in (sizes or [None])}
    per_round: dict[tuple, list[dict]] = {(s, k): [] for s, (engines, _) in plans.items() for k in engines}
    for r in range(rounds):
        for size, (engines, _) in plans.items():
            order = list(engines) if r % 2 == 0 else list(engines)[::-1]  # alternate who goes first
            for key in order:
                res = _spawn(engines[key], env=env)
                per_round[(size, key)].append(res)
                log(f"round {r + 1}/{rounds} {size or 'bundle'} {key}: {_short(res)}")
    rows, refused = [], {}
    for size, (engines, _) in plans.items():
        for key in (k for k in engines if k.startswith("ours:")):
            row = _row(size, key, per_round, engines)
            if row is None:  # every round failed: say why, where the table lists what was not measured
                refused[f"{size or 'bundle'} {key}"] = per_round[(size, key)][0]["error"]
            else:
                rows.append(row)
    if not rows:
        raise RuntimeError(f"no run of our station succeeded: {per_round}")
    first = rows[0]
    result: dict[str, Any] = {
        "machine": {**host, "loadavg_end": [round(x, 2) for x in os.getloadavg()]}, "bundle": str(bundle),
        "frames": frames, "rounds": rounds, **{k: v for k, v in first.items() if k != "ultralytics"},
        "figures": {"ours": {"engine": first["engine"], "precision": first["precision"],
                             "what": "Inspector.step: letterbox + infer + decode/NMS + decision"}},
        "matrix": rows, "skipped": dict(plans[next(iter(plans))][1]),
        "not_measured": {**{f"{s or 'bundle'} {k}": why for s, (_, sk) in plans.items() for k, why in sk.items()},
                         **refused},
        "rounds_detail": [{"size": s, "engine": k, "rounds": v} for (s, k), v in per_round.items()],
    }
    for key, (field, engine, precision) in ULTRA.items():  # the first size's, at the top level as before
        if key in first["ultralytics"]:
            fig = first["ultralytics"][key]
            result[field] = fig["ms_p50"]
            result[field.replace("_ms_p50", "_over_ours")] = fig["over_ours"]
            result["figures"][field] = {"engine": engine, "precision": _ultra_precision(key, precision),
                                        "what": "YOLO.predict: its preprocess + infer + NMS"}
    if soak_minutes > 0:
        log(f"soak: {soak_minutes} min replay ...")
        _, soak_backend, streams = _our_config(args["ours"][0])
        result["soak"] = _spawn(["soak", str(bundle), str(frames_dir), soak_backend, str(threads), str(soak_minutes),
                                 str(streams)], timeout=soak_minutes * 60 + 600, env=env)
    return result


def cpu_note(row: dict) -> str:
    """The station's CPU per part by thread role, and what it allows: with C cores at most
    C x 1000 / total parts/s, whatever the engine's own speed."""
    cpu, cpus = row["cpu_ms_per_part"], row.get("cpus") or 1
    alone = row.get("engine_cpu_ms_alone_p50")
    roles = ", ".join(f"{k} {cpu[k]:.2f}" for k in ("capture", "decide", "timing", "other"))
    return (f"CPU ms per part {row['imgsz']} px {row['config']}: engine {cpu['engine']:.2f} in the station"
            f" ({'%.2f' % alone if alone is not None else '-'} alone), {roles}; total {cpu['total']:.2f}:"
            f" {cpus} CPUs judge at most {cpus * 1000 / cpu['total']:.0f} parts/s")


def _row(size: int | None, key: str, per_round: dict, engines: dict) -> dict | None:
    """Our configuration's figures (its best round) and, per ultralytics engine, the median over rounds
    of ultralytics' time / ours in the same round."""
    runs = per_round[(size, key)]
    ok = [x for x in runs if "error" not in x]
    if not ok:
        return None
    best = min(ok, key=lambda x: x["pipeline_ms_p50"])
    row = {"size": size or "bundle", "config": key.split(":", 1)[1], "imgsz": best["imgsz"][0],
           "engine": best["engine"], "precision": best["precision"], "views": best["views"], "streams": best["streams"],
           **{k: round(best[k], 3) for k in ("raw_ms_p50", "pipeline_ms_p50", "fixed_ms_p50", "throughput_fps",
                                             "fire_error_ms_p50", "fire_error_ms_p99", "engine_busy")},
           "overhead_ratio": round(best["pipeline_ms_p50"] / best["raw_ms_p50"], 4),
           "throughput_ratio": round(best["throughput_fps"] * best["raw_ms_p50"] / 1000.0, 4),
           "fires": best["fires"], "timing": best.get("timing", "thread"), "missed_fires": best.get("missed_fires"),
           # the best round is the fastest one: a fire-time outlier in another round is shown beside it,
           # with the vCPU steal of that round (None off Linux)
           "fire_error_ms_p99_rounds": [round(x["fire_error_ms_p99"], 3) for x in ok],
           "steal_s_rounds": [x.get("steal_s") for x in ok],
           "rss_mb": round(max(x["rss_mb"] for x in ok), 1),
           # the best round's CPU per part by thread role in the station, and the engine's alone
           "cpu_ms_per_part": best.get("cpu_ms_per_part"), "engine_cpu_ms_alone_p50": best.get("engine_cpu_ms_alone_p50"),
           "cpus": best.get("cpus"), "ultralytics": {}}
    for ukey in ULTRA:
        if ukey not in engines:
            continue
        theirs = per_round[(size, ukey)]
        pairs = [t["ms_p50"] / o["pipeline_ms_p50"] for o, t in zip(runs, theirs) if "error" not in o and "error" not in t]
        good = [t["ms_p50"] for t in theirs if "error" not in t]
        if pairs:
            # every round's ratio beside the median: on a shared VM one round can run 1.5-2x slower (2026-12-03)
            row["ultralytics"][ukey] = {"ms_p50": round(min(good), 3), "over_ours": round(statistics.median(pairs), 3),
                                        "over_ours_rounds": [round(p, 3) for p in pairs]}
    return row


def _ultra_precision(key: str, precision: str) -> str:
    compute = _openvino_cpu_default_precision() if key == "ultra_openvino" else ""
    if compute not in ("", "f32"):
        return f"fp32 weights, {compute} compute (OpenVINO's CPU default on this machine)"
    return precision


def _openvino_cpu_default_precision() -> str:
    """What OpenVINO computes an FP32 model in when nobody asks (bf16 on CPUs with AVX512_BF16/AMX)."""
    if not _has("openvino"):
        return ""
    import openvino as ov

    hint = ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT")
    return hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _short(res: dict) -> str:
    if "error" in res:
        return "ERROR " + res["error"]
    keys = ("raw_ms_p50", "pipeline_ms_p50", "fixed_ms_p50", "throughput_fps", "fire_error_ms_p99", "ms_p50")
    line = " ".join(f"{k}={res[k]:.2f}" for k in keys if k in res)
    return line + (f" steal_s={res['steal_s']:.2f}" if res.get("steal_s") is not None else "")


def table(r: dict) -> str:
    """One table: a row per (size, our configuration), ultralytics' time over ours in the last columns."""
    m = r["machine"]
    feats = ", ".join(k for k, v in m.get("cpu_features", {}).items() if v) or "?"
    cap = f", oneDNN ISA capped at {m['onednn_max_cpu_isa']}" if m.get("onednn_max_cpu_isa") else ""
    family = f" family {m['CPU family']} model {m.get('Model', '?')}" if m.get("CPU family") else ""
    head = [f"{m.get('Model name', '?')}{family} ({m.get('cpus')} CPUs; {feats}{cap}); load {m.get('loadavg_1_5_15')}",
            "ratios: ultralytics ms / our per-frame ms, same round, median over rounds (> 1: ours is faster)"]
    cols = ("size", "ours", "engine / precision", "raw", "frame", "fixed", "overhead", "fps", "thr ratio", "busy",
            "fire p99", "RSS", *(f"/{SHORT[k]}" for k in ULTRA))
    lines = [cols]
    for row in r["matrix"]:
        u = row["ultralytics"]
        lines.append((str(row["imgsz"]), row["config"], f"{row['engine']} / {row['precision']}", row["raw_ms_p50"],
                      row["pipeline_ms_p50"], row["fixed_ms_p50"], row["overhead_ratio"], row["throughput_fps"],
                      row["throughput_ratio"], row["engine_busy"], row["fire_error_ms_p99"], row["rss_mb"],
                      *(u[k]["over_ours"] if k in u else "-" for k in ULTRA)))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(cols))]
    body = ["  ".join(f"{str(v):>{w}}" for v, w in zip(line, widths)) for line in lines]
    ultra = {row["imgsz"]: f"ultralytics at {row['imgsz']} px, ms p50: " + ", ".join(
        f"{k} {v['ms_p50']}" for k, v in row["ultralytics"].items()) for row in r["matrix"][::-1] if row["ultralytics"]}
    notes = [f"{k}: not measured: {why}" for k, why in r.get("not_measured", {}).items()]
    notes += [f"fire error {row['imgsz']} px {row['config']}: {row['timing']} timing, {row['fires']} pulses, p50 "
              f"{row['fire_error_ms_p50']} / p99 {row['fire_error_ms_p99']} ms, {row['missed_fires']} windows missed"
              for row in r["matrix"]]
    notes += [cpu_note(row) for row in r["matrix"] if row.get("cpu_ms_per_part")]
    for row in r["matrix"]:
        spread = [f"{SHORT[k]} {min(v['over_ours_rounds'])}-{max(v['over_ours_rounds'])}"
                  for k, v in row["ultralytics"].items() if len(v.get("over_ours_rounds", [])) > 1]
        if spread:
            notes.append(f"ratios per round {row['imgsz']} px {row['config']}: " + ", ".join(spread))
    if "soak" in r and "rss_slope_mb_per_min" in r["soak"]:
        notes.append(f"soak RSS slope MB/min (second half) {round(r['soak']['rss_slope_mb_per_min'], 3)}")
    legend = ("raw: engine only; frame: Inspector.step (overhead ratio = frame / raw, target <= 1.05); fixed: letterbox + "
              "decode + decision without the engine; thr ratio = pipelined fps x raw (target >= 0.95); busy: engine-busy "
              "fraction in the threaded station; fire p99 ms (target <= 1; with --timing process <= 0.1); RSS MB (target <= 300 on OpenVINO)")
    return "\n".join([*head, *body, *ultra.values(), *notes, legend])


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        import logging

        from .errors import DefectgateError

        logging.basicConfig(level=logging.WARNING)
        try:
            print(json.dumps(worker_main(sys.argv[2:])))
        except DefectgateError as exc:  # a refusal (e.g. bf16 on a CPU without it): its one line, no traceback
            print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
            raise SystemExit(3)
    else:
        raise SystemExit("use: defectgate bench --help")
