"""Quick comparison of reject fire-time error: the station's in-thread timing (a thread beside
the inference threads, GIL switch interval 0.5 ms, as pipeline.py runs it) against the timing
process, under the same load. Not the publishable figure (that comes from `defectgate bench` on a
quiet machine); a check that the process removes the GIL from the pulse path.

    python -m defectgate.line.timing_bench [--pulses 300] [--bundle runs/demo/bundle] [--json out.json]

Load: with --bundle, that model's backend inferring in two threads (real inference load);
without, two NumPy matmul threads plus one pure-Python thread (the GIL-holding part of decode)."""

from __future__ import annotations

import argparse
import json
import sys
import threading

import numpy as np

from ..bench import machine
from ..clock import MonotonicClock
from ..firing import GIL_SWITCH_S, WAKE_BEFORE_PULSE_S
from ..scheduler import RejectScheduler
from .timing_process import ProcessScheduler

PITCH_S = 0.01  # one pulse every 10 ms


def _load(stop: threading.Event, bundle: str | None) -> list[threading.Thread]:
    if bundle:
        from ..backends import load_backend
        from ..bundle import load_bundle

        b = load_bundle(bundle)
        backend = load_backend(b, "auto", 0)
        shape = (1, 3, b.sidecar.input.height, b.sidecar.input.width)
        batch = np.random.default_rng(0).random(shape, dtype=np.float32)
        work = [lambda: backend.infer(batch)] * 2
    else:
        a = np.random.default_rng(0).random((256, 256), dtype=np.float32)
        work = [lambda: a @ a, lambda: a @ a, lambda: sum(i * i for i in range(20_000))]

    def spin(fn):
        while not stop.is_set():
            fn()

    return [threading.Thread(target=spin, args=(fn,), daemon=True) for fn in work]


def _in_thread(pulses: int) -> list[float]:
    # the station's timing thread: woken WAKE_BEFORE_PULSE_S before each pulse, spinning the rest
    clock, sched, errors = MonotonicClock(WAKE_BEFORE_PULSE_S), RejectScheduler(1000.0, 100.0, 0.005), []
    t0 = clock.now()
    for part in range(pulses):
        sched.arm(part, t0 + part * PITCH_S)
    switch = sys.getswitchinterval()
    sys.setswitchinterval(GIL_SWITCH_S)
    try:
        while len(errors) < pulses:
            due = sched.next_due()
            if due is None:
                break
            clock.sleep_until(due)
            fire, missed = sched.pop_window(clock.now())
            errors += [(clock.now() - c.fire_at) * 1000 for c in fire] + [float("nan")] * len(missed)
    finally:
        sys.setswitchinterval(switch)
    return errors


def _in_process(pulses: int) -> list[float]:
    clock = MonotonicClock()
    sched = ProcessScheduler(1000.0, 100.0, 0.005).start()
    errors: list[float] = []
    try:
        t0 = clock.now() + 0.2
        for part in range(pulses):
            sched.arm(part, t0 + part * PITCH_S)
        sched.pump(lambda c, t, e: errors.append((t - c.fire_at) * 1000 if t is not None else float("nan")),
                   lambda c, why: errors.append(float("nan")), until=lambda: True)
    finally:
        sched.close()
    return errors


def _stats(errors: list[float]) -> dict:
    e = np.array(errors, float)
    ok = np.abs(e[np.isfinite(e)])
    return {"pulses": len(e), "missed": int(np.sum(~np.isfinite(e))),
            "p50_ms": round(float(np.percentile(ok, 50)), 3), "p99_ms": round(float(np.percentile(ok, 99)), 3),
            "max_ms": round(float(ok.max()), 3)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m defectgate.line.timing_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--pulses", type=int, default=300)
    p.add_argument("--bundle", default=None)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    stop = threading.Event()
    threads = _load(stop, args.bundle)
    for t in threads:
        t.start()
    try:
        result = {"in_thread": _stats(_in_thread(args.pulses)), "process": _stats(_in_process(args.pulses))}
    finally:
        stop.set()
    result["load"] = f"bundle {args.bundle} x2 threads" if args.bundle else "2 numpy matmul + 1 pure-Python thread"
    result["machine"] = machine()  # load average included: a shared machine drifts
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
