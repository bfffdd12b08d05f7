"""The runtime benchmark behind `defectgate bench` and `make bench`.

Every engine is timed in its own subprocess, and the engines take turns in alternating rounds:
engines that share a process fight over threads and distort each other, and a shared machine's
load drifts; the figure kept per engine is the best (lowest) per-round median.

Workers (each a `python -m defectgate.bench worker ...` process):
  ours             our station on the bundle with `--backend`: raw `backend.infer` time, full
                   per-frame `Inspector.step` time (Detector: letterbox + infer + decode/NMS; + decision),
                   pipelined throughput of the threaded station (file replay, no frame dropped),
                   fire-time error under that inference load (every part fired, at least `--pulses`
                   of them; timed by the station's thread or by the timing process, `--timing`), peak RSS
  ultra_onnx       ultralytics `YOLO(model.onnx).predict` on the same frames
  ultra_openvino   ultralytics predict on its own OpenVINO export of `--weights` (FP32)
  ultra_openvino_int8  the same with ultralytics' `int8=True` export, calibrated offline on `--data`
The ultralytics workers import ultralytics inside the worker only; the runtime never does.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

WARMUP = 5


def _p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def make_frames(folder: Path, n: int, hw: tuple[int, int] = (240, 320), seed: int = 7) -> Path:
    """N synthetic part images (the same for every engine), written once."""
    from . import synthparts

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        path = folder / f"frame_{i:05d}.png"
        if not path.exists():
            cv2.imwrite(str(path), synthparts.render_scene(seed * 100_003 + i, hw, 0.5).image)
    return folder


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                            "cpus": os.cpu_count(), "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()]}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("Model name", "CPU(s)", "Thread(s) per core", "Flags"):
                value = value.strip()
                if key.strip() == "Flags":
                    value = " ".join(f for f in value.split() if f.startswith(("avx", "amx", "vnni")))
                info[key.strip()] = value
    except (OSError, subprocess.SubprocessError):
        pass
    return info


class MemorySource:
    """Frames already decoded in memory, handed out as fast as they are read: a camera that
    delivers raw frames costs the station nothing to decode, so neither does this source (a
    file:// replay would add PNG decoding to the capture thread)."""

    def __init__(self, images: list[np.ndarray], clock: Any, loops: int = 1):
        self.uri, self.images, self.clock, self.loops = "memory://bench", images, clock, loops
        self.exhausted = False
        self.hw = images[0].shape[:2]
        self._seq = 0

    def read(self, timeout: float):
        from .types import Frame

        if self._seq >= len(self.images) * self.loops:
            self.exhausted = True
            return None
        img = self.images[self._seq % len(self.images)]
        frame = Frame(image=img, t_capture=self.clock.now(), seq=self._seq, part_id=self._seq, source=self.uri)
        self._seq += 1
        return frame

    def close(self) -> None:
        self.exhausted = True


# ----------------------------------------------------------------------------------- workers
def worker_ours(bundle: str, frames_dir: str, backend: str, threads: int, fire_load: bool = True,
                timing: str = "thread", pulses: int = 0) -> dict:
    from .bundle import load_bundle
    from .clock import MonotonicClock
    from .config import load_config
    from .station import build_inspector, build_station

    images = [cv2.imread(str(p)) for p in sorted(Path(frames_dir).glob("*.png"))]
    b = load_bundle(bundle)
    clock = MonotonicClock()
    # "openvino:bf16" / "openvino:f16": OpenVINO with that inference precision (model.compute_precision)
    backend, _, ov_precision = backend.partition(":")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(None, [
            f"model.bundle={bundle}", f"model.backend={backend}", f"model.threads={threads}",
            f"model.compute_precision={ov_precision or 'f32'}",
            f"station.run_dir={tmp}", f"source.uri=file://{Path(frames_dir).resolve()}?speed=max",
            "pipeline.overflow=block", "archive.enabled=false", "alarm.kind=none",
            # pulses 0.5 s after capture: they fall while the following frames are being inferred
            "conveyor.belt_speed_mm_s=600", "conveyor.camera_to_ejector_mm=300",
            # issue #23: the pulses timed by a process of their own (line/timing_process.py), or by the station
            f"line.timing.process={'true' if timing == 'process' else 'false'}",
        ])
        inspector = build_inspector(cfg, clock, b)
        raw, step = [], []
        from .types import Frame

        batches = [inspector.prepare(img)[0].copy() for img in images]
        # interleaved, frame by frame: raw engine time on ready input, then the whole per-frame path
        # on the same frame, so that both see the same machine load (a shared machine drifts)
        for i, (batch, img) in enumerate(zip(batches, images)):
            t = time.perf_counter()
            inspector.infer(batch)
            t1 = time.perf_counter()
            inspector.step(Frame(image=img, t_capture=clock.now(), seq=i, part_id=i))
            t2 = time.perf_counter()
            if i >= WARMUP:
                raw.append((t1 - t) * 1000)
                step.append((t2 - t1) * 1000)
        # pipelined: the threaded station judges the frames as fast as it can (no frame dropped)
        name = inspector.backend.name
        inspector.close()
        loops = max(1, -(-pulses // len(images)))  # the frames again until there are `pulses` parts to fire
        built = build_station(cfg, clock, source=MemorySource(images, clock, loops))
        # fire for every part, whatever its verdict: the timing thread is measured under the full load
        resolve = built.station.scheduler.resolve
        built.station.scheduler.resolve = lambda part, reject, now: resolve(part, True, now)  # type: ignore[method-assign]
        decided: list[float] = []
        built.station.on_verdict = lambda v: decided.append(time.perf_counter())
        stats = built.station.run()  # returns after the last part reached the ejector (seconds later)
        built.close()
    # throughput: frames judged per second from the start to the last verdict (not to the last pulse)
    fps = (len(decided) - 1) / (decided[-1] - decided[0]) if len(decided) > 1 else float("nan")
    raw_p50 = _p(raw, 50)
    side = b.sidecar
    errors = [abs(e) for e in stats.fire_errors_ms]
    return {
        "engine": name, "precision": side.precision, "model_engine": side.engine, "imgsz": list(side.input.imgsz),
        "raw_ms_p50": raw_p50, "raw_ms_p90": _p(raw, 90), "pipeline_ms_p50": _p(step, 50), "pipeline_ms_p90": _p(step, 90),
        "throughput_fps": fps, "throughput_ratio": fps * raw_p50 / 1000.0,
        "fire_error_ms_p50": _p(errors, 50), "fire_error_ms_p99": _p(errors, 99), "fires": len(errors),
        "timing": timing, "missed_fires": stats.missed_fires, "rss_mb": _rss_mb(),
    }


def worker_ultralytics(model: str, frames_dir: str, imgsz: int, conf: float) -> dict:
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from ultralytics import YOLO  # the bench worker only; never the runtime

    images = [cv2.imread(str(p)) for p in sorted(Path(frames_dir).glob("*.png"))]
    yolo = YOLO(model, task="detect")
    times = []
    for i, img in enumerate(images):
        t = time.perf_counter()
        yolo.predict(img, imgsz=imgsz, conf=conf, verbose=False)
        if i >= WARMUP:
            times.append((time.perf_counter() - t) * 1000)
    return {"ms_p50": _p(times, 50), "ms_p90": _p(times, 90), "rss_mb": _rss_mb()}


def worker_soak(bundle: str, frames_dir: str, backend: str, threads: int, minutes: float) -> dict:
    """Replay the frames in a loop through the full station for `minutes`, sampling RSS."""
    import threading

    from .clock import MonotonicClock
    from .config import load_config
    from .station import build_station

    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(None, [
            f"model.bundle={bundle}", f"model.backend={backend}", f"model.threads={threads}",
            f"station.run_dir={tmp}", f"source.uri=file://{Path(frames_dir).resolve()}?speed=max&loop=1000000",
            "pipeline.overflow=block", "alarm.kind=none", "archive.ok_sample_rate=0.01", "archive.quota_mb=50",
        ])
        clock = MonotonicClock()
        images = [cv2.imread(str(p)) for p in sorted(Path(frames_dir).glob("*.png"))]
        built = build_station(cfg, clock, source=MemorySource(images, clock, loops=1 << 40))
        samples: list[tuple[float, float]] = []
        t0 = time.perf_counter()
        runner = threading.Thread(target=built.station.run, daemon=True)
        runner.start()
        while time.perf_counter() - t0 < minutes * 60:
            time.sleep(min(10.0, minutes * 60 / 30))
            samples.append(((time.perf_counter() - t0) / 60, _current_rss_mb()))
        built.station.stop.set()
        runner.join(30)
        parts = built.station.stats.parts_total
        built.close()
    half = samples[len(samples) // 2:] or samples
    slope = float(np.polyfit([s[0] for s in half], [s[1] for s in half], 1)[0]) if len(half) >= 2 else float("nan")
    return {"soak_minutes": minutes, "parts": parts, "rss_mb_start": samples[0][1] if samples else None,
            "rss_mb_end": samples[-1][1] if samples else None, "rss_slope_mb_per_min": slope,
            "samples": samples}


# ------------------------------------------------------------------------------ orchestration
def _spawn(args: list[str], timeout: float = 1800) -> dict:
    cmd = [sys.executable, "-m", "defectgate.bench", "worker", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": " | ".join(tail) or f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


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
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        return "export failed: " + " | ".join((proc.stderr or "").strip().splitlines()[-2:])
    return dst


def run(bundle: Path, frames: int, backend: str, threads: int, rounds: int, weights: Path | None,
        data: str | None, out_dir: Path, soak_minutes: float = 0.0, log=print, timing: str = "thread",
        pulses: int = 200) -> dict:
    from .bundle import load_bundle

    b = load_bundle(bundle)
    host = machine()  # load average at the start: this machine may be shared
    imgsz = int(b.sidecar.input.imgsz[0])
    frames_dir = make_frames(out_dir / "frames", frames)
    engines: dict[str, list[str]] = {"ours": ["ours", str(bundle), str(frames_dir), backend, str(threads), timing,
                                              str(pulses)]}
    skipped: dict[str, str] = {}
    if _has("ultralytics"):
        onnx = b.model_path if b.model_path.suffix == ".onnx" else b.root / "model.onnx"  # an IR bundle keeps its ONNX
        if onnx.is_file():
            engines["ultra_onnx"] = ["ultra", str(onnx), str(frames_dir), str(imgsz), str(b.sidecar.conf_threshold)]
        else:
            skipped["ultra_onnx"] = f"no ONNX file in {b.root}"
        if weights is None:
            skipped["ultra_openvino"] = skipped["ultra_openvino_int8"] = "no --weights given"
        else:
            for int8 in (False, True):
                key = "ultra_openvino_int8" if int8 else "ultra_openvino"
                log(f"exporting ultralytics OpenVINO {'INT8' if int8 else 'FP32'} from {weights} ...")
                model = export_ultralytics_openvino(weights, imgsz, out_dir, int8, data)
                if isinstance(model, str):
                    skipped[key] = model
                else:
                    engines[key] = ["ultra", str(model), str(frames_dir), str(imgsz), str(b.sidecar.conf_threshold)]
    else:
        skipped["ultra_onnx"] = skipped["ultra_openvino"] = skipped["ultra_openvino_int8"] = "ultralytics not installed"
    per_round: dict[str, list[dict]] = {k: [] for k in engines}
    for r in range(rounds):
        order = list(engines) if r % 2 == 0 else list(engines)[::-1]  # alternate who goes first
        for key in order:
            res = _spawn(engines[key])
            per_round[key].append(res)
            log(f"round {r + 1}/{rounds} {key}: {_short(res)}")

    def best(key: str, field: str) -> dict | None:
        ok = [x for x in per_round.get(key, []) if "error" not in x]
        return min(ok, key=lambda x: x[field]) if ok else None

    ours = best("ours", "pipeline_ms_p50")
    if ours is None:
        raise RuntimeError(f"our worker failed: {per_round['ours']}")
    # every ratio from one round (the one with the best per-frame time): never mix rounds
    result: dict[str, Any] = {
        "machine": {**host, "loadavg_end": [round(x, 2) for x in os.getloadavg()]}, "bundle": str(bundle),
        "frames": frames, "rounds": rounds, "imgsz": imgsz,
        "engine": ours["engine"], "precision": ours["precision"],
        "raw_ms_p50": round(ours["raw_ms_p50"], 3), "pipeline_ms_p50": round(ours["pipeline_ms_p50"], 3),
        "overhead_ratio": round(ours["pipeline_ms_p50"] / ours["raw_ms_p50"], 4),
        "throughput_fps": round(ours["throughput_fps"], 2),
        "fire_error_ms_p50": round(ours["fire_error_ms_p50"], 3), "fire_error_ms_p99": round(ours["fire_error_ms_p99"], 3),
        "fires": ours["fires"], "timing": ours["timing"], "missed_fires": ours["missed_fires"],
        "rss_mb": round(max(x["rss_mb"] for x in per_round["ours"] if "error" not in x), 1),
        "figures": {"ours": {"engine": ours["engine"], "precision": ours["precision"],
                             "what": "Inspector.step: letterbox + infer + decode/NMS + decision"}},
        "skipped": skipped, "rounds_detail": per_round,
    }
    result["throughput_ratio"] = round(result["throughput_fps"] * ours["raw_ms_p50"] / 1000.0, 4)
    names = {"ultra_onnx": ("ultralytics_ms_p50", "ultralytics+onnxruntime", "fp32"),
             "ultra_openvino": ("ultralytics_openvino_ms_p50", "ultralytics+openvino", "fp32"),
             "ultra_openvino_int8": ("ultralytics_openvino_int8_ms_p50", "ultralytics+openvino", "int8")}
    compute = _openvino_cpu_default_precision()
    for key, (field, engine, precision) in names.items():
        if key == "ultra_openvino" and compute not in ("", "f32"):
            precision = f"fp32 weights, {compute} compute (OpenVINO's CPU default on this machine)"
        res = best(key, "ms_p50")
        if res is not None:
            result[field] = round(res["ms_p50"], 3)
            result["figures"][field] = {"engine": engine, "precision": precision,
                                        "what": "YOLO.predict: its preprocess + infer + NMS"}
            result[field.replace("_ms_p50", "_over_ours")] = round(res["ms_p50"] / result["pipeline_ms_p50"], 3)
    if soak_minutes > 0:
        log(f"soak: {soak_minutes} min replay ...")
        result["soak"] = _spawn(["soak", str(bundle), str(frames_dir), backend, str(threads), str(soak_minutes)],
                                timeout=soak_minutes * 60 + 600)
    return result


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
        return "ERROR " + res["error"][:200]
    keys = ("raw_ms_p50", "pipeline_ms_p50", "throughput_fps", "fire_error_ms_p99", "ms_p50")
    return " ".join(f"{k}={res[k]:.2f}" for k in keys if k in res)


def table(r: dict) -> str:
    rows = [("engine / precision", f"{r['engine']} / {r['precision']}"), ("input size", r["imgsz"]),
            ("raw infer p50 ms", r["raw_ms_p50"]), ("pipeline per frame p50 ms", r["pipeline_ms_p50"]),
            ("overhead ratio (target <= 1.05)", r["overhead_ratio"]),
            ("pipelined fps", r["throughput_fps"]), ("throughput ratio (target >= 0.95)", r["throughput_ratio"]),
            (f"fire error p50 / p99 ms, {r['timing']} timing, {r['fires']} pulses (target p99 <= 0.1)",
             f"{r['fire_error_ms_p50']} / {r['fire_error_ms_p99']} ({r['missed_fires']} windows missed)"),
            ("peak RSS MB", r["rss_mb"])]
    for field in ("ultralytics_ms_p50", "ultralytics_openvino_ms_p50", "ultralytics_openvino_int8_ms_p50"):
        if field in r:
            fig = r["figures"][field]
            rows.append((f"{field} ({fig['engine']} {fig['precision']})", r[field]))
    for key, why in r.get("skipped", {}).items():
        rows.append((f"{key}", f"not measured: {why}"))
    if "soak" in r and "rss_slope_mb_per_min" in r["soak"]:
        rows.append(("soak RSS slope MB/min", round(r["soak"]["rss_slope_mb_per_min"], 3)))
    width = max(len(str(k)) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _worker_main(argv: list[str]) -> None:
    kind = argv[0]
    if kind == "ours":
        res = worker_ours(argv[1], argv[2], argv[3], int(argv[4]), timing=argv[5], pulses=int(argv[6]))
    elif kind == "ultra":
        res = worker_ultralytics(argv[1], argv[2], int(argv[3]), float(argv[4]))
    elif kind == "soak":
        res = worker_soak(argv[1], argv[2], argv[3], int(argv[4]), float(argv[5]))
    else:
        raise SystemExit(f"unknown worker {kind}")
    print(json.dumps(res))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        import logging

        logging.basicConfig(level=logging.WARNING)
        _worker_main(sys.argv[2:])
    else:
        raise SystemExit("use: defectgate bench --help")
