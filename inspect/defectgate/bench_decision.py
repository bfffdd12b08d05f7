"""`python -m defectgate.bench_decision --model B --images DIR`: what a part score costs per frame.

Issue 24 allows a part-level decision at most 1.2x the station's single-view time. A part-score bundle
decodes down to its box_floor (more boxes through NMS) and scores every part; the same bundle without
its part score decodes down to its lowest class threshold and asks "any box above its class
threshold". Both run here as the station runs a frame (`Inspector.step`: prepare, infer, decode,
decide), built by `station.build_inspector` from the same model file, in one process, taking turns
frame by frame so that load drift on a shared machine falls on both alike. Prints JSON: p50 ms per
frame each, their ratio, and the decode + decide share without the engine."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from .bench_workers import machine
from .bundle import Bundle, load_bundle
from .clock import MonotonicClock
from .config import load_config
from .errors import BundleError
from .images import evenly_spaced, list_images, read_image
from .station import build_inspector
from .types import Frame, Outcome


def _ms(samples: list[float]) -> float:
    return round(1000 * statistics.median(samples), 3)


def bench_decision(model: str | Path, images: str | Path, frames: int = 200, rounds: int = 3,
                   backend: str = "onnxruntime", threads: int = 0) -> dict:
    scored = load_bundle(model)
    if scored.sidecar.part_score is None:
        raise BundleError(f"{scored.root}/model.json: declares no part_score; export it with --part-score")
    any_box = Bundle(scored.root, scored.sidecar.model_copy(update={"part_score": None}))
    paths = evenly_spaced(list_images(images), frames)
    pics = [read_image(p) for p in paths]
    cfg = load_config(None, [f"model.backend={backend}", f"model.threads={threads}"])
    clock = MonotonicClock()
    inspectors = {"part_score": build_inspector(cfg, clock, scored), "any_box": build_inspector(cfg, clock, any_box)}
    step: dict[str, list[float]] = {k: [] for k in inspectors}
    tail: dict[str, list[float]] = {k: [] for k in inspectors}
    ng = {k: 0 for k in inspectors}
    try:
        for ins in inspectors.values():
            ins.warm_up()
        for r in range(rounds):
            for i, img in enumerate(pics):
                frame = Frame(image=img, t_capture=clock.now(), seq=i)
                for key, ins in inspectors.items():
                    t0 = time.perf_counter()
                    verdict = ins.step(frame)
                    step[key].append(time.perf_counter() - t0)
                    # step() hands back no engine outputs, so the decode + decide share is timed on a
                    # second pass of the same frame (bench cost only; the frame figure stays step's own)
                    batch, info = ins.prepare(img)
                    out = ins.infer(batch)
                    t1 = time.perf_counter()
                    ins.judge(frame, out, info)
                    tail[key].append(time.perf_counter() - t1)
                    ng[key] += r == 0 and verdict.outcome is Outcome.NG
    finally:
        for ins in inspectors.values():
            ins.close()
    out = {"model": str(scored.root), "images": str(images), "frames": len(pics), "rounds": rounds, "backend": backend,
           "ng_frames": ng, "frame_ms_p50": {k: _ms(v) for k, v in step.items()},
           "decode_decide_ms_p50": {k: _ms(v) for k, v in tail.items()}, "machine": machine()}
    out["ratio"] = round(out["frame_ms_p50"]["part_score"] / out["frame_ms_p50"]["any_box"], 3)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m defectgate.bench_decision", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="a bundle that declares a part score")
    p.add_argument("--images", required=True, help="folder of frames to judge")
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--backend", default="onnxruntime")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--json", help="also write the result here")
    a = p.parse_args(argv)
    r = bench_decision(a.model, a.images, a.frames, a.rounds, a.backend, a.threads)
    if a.json:
        Path(a.json).write_text(json.dumps(r, indent=2))
    print(json.dumps({k: v for k, v in r.items() if k != "machine"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
