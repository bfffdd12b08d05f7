"""`defectgate plc-sim`: a simulated PLC on a real Modbus TCP server, running the program of
deploy/plc/defectgate_result.st (encoder, shift register, ejector, acks, reject confirm). Point a
station's `line.result_block` (transport modbus) at it. Runs until SIGTERM/Ctrl-C or --duration
then prints what the PLC did (parts ejected, of those for lack of a result, confirmed...; --json adds
each part's decision). With --parts the summary is written to --json as soon as that many parts have
passed the ejector, and the sim goes on serving (so the station can stop cleanly) until SIGTERM."""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time
from pathlib import Path


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="defectgate plc-sim", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5020)
    p.add_argument("--base", type=int, default=0, help="first holding register of the result block")
    p.add_argument("--belt-speed", type=float, default=600.0, help="mm/s")
    p.add_argument("--ticks-per-mm", type=float, default=10.0)
    p.add_argument("--camera-to-ejector", type=float, default=300.0, help="mm")
    p.add_argument("--pitch", type=float, default=120.0, help="mm between parts; 0 = no parts of its own")
    p.add_argument("--pulse-ms", type=float, default=30.0)
    p.add_argument("--confirm-delay-ms", type=float, default=60.0, help="pulse to confirm-sensor edge")
    p.add_argument("--confirm-pulse-ms", type=float, default=20.0,
                   help="how long the confirm sensor stays on for each part it sees")
    p.add_argument("--confirm-miss-rate", type=float, default=0.0, help="fraction of rejects the sensor misses")
    p.add_argument("--pass-without-result", action="store_true",
                   help="let a part without a result pass (default: reject it, fail-safe)")
    p.add_argument("--parts", type=int, default=0, help="stop the photo-eye after this many parts; once all of "
                   "them have passed the ejector, write --json; 0 = no limit")
    p.add_argument("--wait-for-station", action="store_true",
                   help="keep the belt still until the station's state word says Ready or Executing")
    p.add_argument("--duration", type=float, default=0.0, help="seconds; 0 = until SIGTERM")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", dest="json_out", default=None, help="write the summary here too")
    return p


def main(argv: list[str]) -> int:
    from ..line.plc_sim import PlcSimulator

    a = parser().parse_args(argv)
    if a.parts < 0 or (a.parts and not a.pitch):
        from ..errors import ConfigError

        raise ConfigError(f"plc-sim --parts {a.parts}: a count >= 0, and it needs --pitch > 0 (the sim's own parts)")
    sim = PlcSimulator(a.host, a.port, a.base, a.belt_speed, a.ticks_per_mm, a.camera_to_ejector,
                       a.pitch or None, pulse_ms=a.pulse_ms, confirm_delay_ms=a.confirm_delay_ms,
                       confirm_miss_rate=a.confirm_miss_rate, confirm_pulse_ms=a.confirm_pulse_ms,
                       reject_without_result=not a.pass_without_result,
                       seed=a.seed, parts=a.parts or None, wait_for_station=a.wait_for_station).start()
    done = threading.Event()
    previous = {s: signal.signal(s, lambda *_: done.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    print(f"plc-sim: Modbus TCP on {a.host}:{a.port}, result block at holding register {a.base}", flush=True)
    try:
        end = time.monotonic() + a.duration if a.duration else None
        written = False
        while not done.wait(0.1) and (end is None or time.monotonic() < end):
            if a.parts and not written and sim.finished:
                written = _write(a.json_out, sim.summary())
                print(f"plc-sim: {a.parts} parts done", flush=True)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        summary = sim.summary()
        sim.close()
    print(json.dumps({k: v for k, v in summary.items() if k != "decisions"}, indent=2))  # per part: --json
    _write(a.json_out, summary)
    return 0


def _write(path: str | None, summary: dict) -> bool:
    if path:
        from ..staging import write_json_atomic

        write_json_atomic(Path(path), summary)
    return True
