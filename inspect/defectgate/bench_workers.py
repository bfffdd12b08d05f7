"""The processes `defectgate bench` times (bench.py runs each in a process of its own):

  ours     our station on one bundle and backend: raw `infer` time on ready input, the whole per-frame
           `Inspector.step`, the fixed cost around the engine alone (letterbox + decode + decision on
           stored outputs), pipelined throughput of the threaded station (no frame dropped), the
           engine-busy fraction there, fire-time error under that load, the CPU per part by thread
           role there (bench_cpu.py) against the engine's CPU per inference alone, peak RSS
  ultra    ultralytics `YOLO(model).predict` on the same frames (ONNX, or one of its OpenVINO exports)
  soak     the full station replaying the frames in a loop, RSS sampled, for minutes

and what every figure is recorded with: the machine (CPU model and the instruction sets that decide
INT8 and bf16 speed). Ultralytics is imported inside its worker only; the runtime never does."""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .bench_cpu import CpuWindow

WARMUP = 5
# /proc/cpuinfo flags -> the instruction sets an INT8 or bf16 model's speed depends on
CPU_FEATURES = {"avx2": ("avx2",), "avx512": ("avx512f",), "vnni": ("avx512_vnni", "avx_vnni"),
                "bf16": ("avx512_bf16", "amx_bf16"), "amx": ("amx_tile",)}


def _p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20  # MiB, as _rss_mb


def make_frames(folder: Path, n: int, hw: tuple[int, int] = (240, 320), seed: int = 7) -> Path:
    """N synthetic part images (the same for every engine), written once."""
    from . import synthparts

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        path = folder / f"frame_{i:05d}.png"
        if not path.exists():
            cv2.imwrite(str(path), synthparts.render_scene(seed * 100_003 + i, hw, 0.5).image)
    return folder


def cpu_features(flags: set[str]) -> dict[str, bool]:
    return {name: any(f in flags for f in names) for name, names in CPU_FEATURES.items()}


def cpu_steal_s(stat: str | Path = "/proc/stat") -> float | None:
    """Seconds of CPU time the hypervisor gave to others, all CPUs together, since boot (the 8th
    field of /proc/stat's `cpu` line); None where there is no such file. A fire-time outlier on a VM
    is read against the steal over the same run: a timing process at real-time priority is not
    delayed by the station, but a descheduled vCPU delays it all the same."""
    try:
        first = Path(stat).read_text().splitlines()[0].split()
        return int(first[8]) / os.sysconf("SC_CLK_TCK") if first[0] == "cpu" and len(first) > 8 else None
    except (OSError, ValueError, IndexError):
        return None


def steal_since(start: float | None) -> float | None:
    now = cpu_steal_s()
    return None if start is None or now is None else round(now - start, 3)


def machine() -> dict[str, Any]:
    """Where a figure was taken: CPU model (name, family, model number), count and instruction sets,
    load, and the oneDNN ISA cap when one is set (ONEDNN_MAX_CPU_ISA=AVX2 makes OpenVINO run as on a
    CPU without AVX-512/VNNI)."""
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                            "cpus": os.cpu_count(), "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()],
                            "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "")}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            key, _, value = line.partition(":")
            # a VM's model name can be as bare as "AMD EPYC": family and model tell Zen 3 (25/1) from Zen 4 (25/17)
            if key.strip() in ("Model name", "CPU family", "Model", "CPU(s)", "Thread(s) per core", "Flags"):
                value = value.strip()
                if key.strip() == "Flags":
                    info["cpu_features"] = cpu_features(set(value.split()))
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


def _images(frames_dir: str) -> list[np.ndarray]:
    return [cv2.imread(str(p)) for p in sorted(Path(frames_dir).glob("*.png"))]


def _station_overrides(bundle: str, backend: str, threads: int, streams: int, run_dir: str, frames_dir: str) -> list[str]:
    # "openvino:bf16" / "openvino:f16": OpenVINO with that inference precision (model.compute_precision)
    name, _, compute = backend.partition(":")
    return [f"model.bundle={bundle}", f"model.backend={name}", f"model.threads={threads}",
            f"model.compute_precision={compute or 'f32'}", f"model.streams={streams}", f"station.run_dir={run_dir}",
            f"source.uri=file://{Path(frames_dir).resolve()}?speed=max"]


def worker_ours(bundle: str, frames_dir: str, backend: str, threads: int, streams: int = 1, timing: str = "thread",
                pulses: int = 0) -> dict:
    from .bundle import load_bundle
    from .clock import MonotonicClock
    from .config import load_config
    from .station import build_inspector, build_station
    from .types import Frame

    images = _images(frames_dir)
    b = load_bundle(bundle)
    clock = MonotonicClock()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(None, [
            *_station_overrides(bundle, backend, threads, streams, tmp, frames_dir),
            "pipeline.overflow=block", "archive.enabled=false", "alarm.kind=none",
            # pulses 0.5 s after capture: they fall while the following frames are being inferred
            "conveyor.belt_speed_mm_s=600", "conveyor.camera_to_ejector_mm=300",
            # issue #23: the pulses timed by a process of their own (line/timing_process.py), or by the station
            f"line.timing.process={'true' if timing == 'process' else 'false'}",
        ])
        inspector = build_inspector(cfg, clock, b)
        raw, raw_cpu, step, fixed = [], [], [], []
        # interleaved, frame by frame: raw engine time on ready input, then the whole per-frame path
        # on the same frame, then the same frame's letterbox + decode + decision without the engine
        # (on the outputs just computed), so that all three see the same machine load. Each frame's
        # input is prepared just before its turn: holding all of them (200 x 4.9 MB at 640 px in float)
        # would be counted in the station's peak RSS, which a station never holds
        for i, img in enumerate(images):
            batch = inspector.prepare(img)[0].copy()
            c, t = time.process_time(), time.perf_counter()
            outputs = inspector.infer(batch)
            t1, c1 = time.perf_counter(), time.process_time()  # every thread's CPU: the engine's workers too
            frame = Frame(image=img, t_capture=clock.now(), seq=i, part_id=i)
            inspector.step(frame)
            t2 = time.perf_counter()
            _, info = inspector.prepare(img)
            inspector.judge(frame, outputs, info)
            t3 = time.perf_counter()
            if i >= WARMUP:
                raw.append((t1 - t) * 1000)
                raw_cpu.append((c1 - c) * 1000)
                step.append((t2 - t1) * 1000)
                fixed.append((t3 - t2) * 1000)
        name = inspector.backend.name
        inspector.close()
        # pipelined: the threaded station judges the frames as fast as it can (no frame dropped)
        loops = max(1, -(-pulses // len(images)))  # the frames again until there are `pulses` parts to fire
        built = build_station(cfg, clock, source=MemorySource(images, clock, loops))
        station = built.station
        # fire for every part, whatever its verdict: the timing thread is measured under the full load
        resolve = station.scheduler.resolve
        station.scheduler.resolve = lambda part, reject, now: resolve(part, True, now)  # type: ignore[method-assign]
        decided: list[float] = []
        # where the CPU goes, by thread, while every station thread runs (the 20th to 80th percent)
        cpu = CpuWindow(lambda: {"timing": pid} if (pid := getattr(station.scheduler, "child_pid", None)) else {})
        marks = {len(images) * loops // 5, len(images) * loops * 4 // 5}

        def on_verdict(_verdict: Any) -> None:
            decided.append(time.perf_counter())
            if len(decided) in marks:
                cpu.mark(len(decided))

        station.on_verdict = on_verdict
        busy = _engine_busy(station)
        steal0 = cpu_steal_s()
        stats = station.run()  # returns after the last part reached the ejector (seconds later)
        steal_s = steal_since(steal0)
        built.close()
    # throughput: frames judged per second from the start to the last verdict (not to the last pulse)
    fps = (len(decided) - 1) / (decided[-1] - decided[0]) if len(decided) > 1 else float("nan")
    raw_p50 = _p(raw, 50)
    side = b.sidecar
    errors = [abs(e) for e in stats.fire_errors_ms]
    return {
        "engine": name, "precision": side.precision, "model_engine": side.engine, "imgsz": list(side.input.imgsz),
        "views": side.tta.views, "streams": streams,
        "raw_ms_p50": raw_p50, "raw_ms_p90": _p(raw, 90), "pipeline_ms_p50": _p(step, 50), "pipeline_ms_p90": _p(step, 90),
        "fixed_ms_p50": _p(fixed, 50), "fixed_ms_p90": _p(fixed, 90),
        "throughput_fps": fps, "throughput_ratio": fps * raw_p50 / 1000.0, "engine_busy": busy.fraction(),
        "fire_error_ms_p50": _p(errors, 50), "fire_error_ms_p99": _p(errors, 99), "fires": len(errors),
        "timing": timing, "missed_fires": stats.missed_fires, "steal_s": steal_s, "rss_mb": _rss_mb(),
        "engine_cpu_ms_alone_p50": _p(raw_cpu, 50), "cpu_ms_per_part": cpu.per_part_ms(), "cpus": os.cpu_count(),
    }


class _BusyMeter:
    """Sums the time the station's inference threads spend inside the engine (any of them: with
    several streams, a moment with at least one inference running counts once)."""

    def __init__(self) -> None:
        self.running, self.busy, self.first, self.last, self.since = 0, 0.0, None, None, 0.0
        self.lock = threading.Lock()

    def enter(self) -> None:
        with self.lock:
            now = time.perf_counter()
            self.first = now if self.first is None else self.first
            if self.running == 0:
                self.since = now
            self.running += 1

    def leave(self) -> None:
        with self.lock:
            now = time.perf_counter()
            self.running -= 1
            if self.running == 0:
                self.busy += now - self.since
            self.last = now

    def fraction(self) -> float:
        span = (self.last - self.first) if self.first is not None and self.last is not None else 0.0
        return self.busy / span if span > 0 else float("nan")


def _engine_busy(station: Any) -> _BusyMeter:
    meter, inspector = _BusyMeter(), station.inspector
    infer = inspector.infer

    def timed(batch: np.ndarray) -> list[np.ndarray]:
        meter.enter()
        try:
            return infer(batch)
        finally:
            meter.leave()

    inspector.infer = timed  # type: ignore[method-assign]
    return meter


def worker_ultralytics(model: str, frames_dir: str, imgsz: int, conf: float) -> dict:
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from ultralytics import YOLO  # the bench worker only; never the runtime

    images = _images(frames_dir)
    yolo = YOLO(model, task="detect")
    times = []
    for i, img in enumerate(images):
        t = time.perf_counter()
        yolo.predict(img, imgsz=imgsz, conf=conf, verbose=False)
        if i >= WARMUP:
            times.append((time.perf_counter() - t) * 1000)
    return {"ms_p50": _p(times, 50), "ms_p90": _p(times, 90), "rss_mb": _rss_mb()}


def worker_soak(bundle: str, frames_dir: str, backend: str, threads: int, minutes: float, streams: int = 1) -> dict:
    """Replay the frames in a loop through the full station (archive on) for `minutes`, sampling RSS;
    the slope is fitted over the second half (the first fills the bounded histories by design)."""
    from .clock import MonotonicClock
    from .config import load_config
    from .station import build_station

    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(None, [
            *_station_overrides(bundle, backend, threads, streams, tmp, frames_dir),
            "pipeline.overflow=block", "alarm.kind=none", "archive.ok_sample_rate=0.01", "archive.quota_mb=50",
        ])
        clock = MonotonicClock()
        built = build_station(cfg, clock, source=MemorySource(_images(frames_dir), clock, loops=1 << 40))
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
        engine = built.station.inspector.backend.name
        built.close()
    half = samples[len(samples) // 2:] or samples
    slope = float(np.polyfit([s[0] for s in half], [s[1] for s in half], 1)[0]) if len(half) >= 2 else float("nan")
    return {"soak_minutes": minutes, "engine": engine, "parts": parts,
            "rss_mb_start": samples[0][1] if samples else None, "rss_mb_end": samples[-1][1] if samples else None,
            "rss_mb_peak": _rss_mb(), "rss_slope_mb_per_min": slope, "second_half_from_min": half[0][0] if half else None,
            "samples": samples}


def worker_main(argv: list[str]) -> dict:
    kind = argv[0]
    if kind == "ours":
        streams, timing, pulses = (argv[5:8] + ["1", "thread", "0"][len(argv[5:8]):])
        return worker_ours(argv[1], argv[2], argv[3], int(argv[4]), int(streams), timing, int(pulses))
    if kind == "ultra":
        return worker_ultralytics(argv[1], argv[2], int(argv[3]), float(argv[4]))
    if kind == "soak":
        return worker_soak(argv[1], argv[2], argv[3], int(argv[4]), float(argv[5]), *(int(x) for x in argv[6:7]))
    raise SystemExit(f"unknown worker {kind}")
