"""`defectgate bench --model BUNDLE --frames N --json out.json [--backend B | --ours C1,C2,...]
[--sizes bundle,640] [--weights best.pt --data data.yaml] [--rounds R] [--isa AVX2] [--soak-minutes M]
[--timing thread|process --pulses P]`: raw inference vs the full per-frame pipeline, the fixed cost
around the engine, pipelined throughput and engine-busy fraction, fire-time error under inference load
(`--timing`: the station's timing thread, or the timing process of issue #23; at least `--pulses`
pulses), peak RSS, and, when ultralytics is
installed, ultralytics predict on the same ONNX model and on its own OpenVINO FP32 / INT8 exports
of `--weights` (each engine in its own process, alternating rounds), at each size. Prints one table
with the ratios against ultralytics; writes JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..bench import run, table
from ..errors import ConfigError


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="defectgate bench", description=__doc__)
    p.add_argument("--model", required=True, help="bundle folder (model.onnx + model.json)")
    p.add_argument("--frames", type=int, default=200, help="frames per engine per round")
    p.add_argument("--json", dest="json_out", default=None, help="write the results here")
    p.add_argument("--backend", default="onnxruntime", help="our backend: onnxruntime, openvino, auto, ...")
    p.add_argument("--threads", type=int, default=0, help="inference threads for our backend, 0 = engine default")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds; the best median per engine is kept")
    p.add_argument("--weights", default=None, help="the .pt weights, for ultralytics' OpenVINO FP32/INT8 exports")
    p.add_argument("--data", default=None, help="dataset yaml for ultralytics' INT8 calibration")
    p.add_argument("--out", default="runs/bench", help="work folder (frames, cached exports)")
    p.add_argument("--soak-minutes", type=float, default=0.0, help="also replay this long and report the RSS slope")
    p.add_argument("--shadow", default=None, metavar="BUNDLE",
                   help="instead: the line with and without this candidate in shadow mode (live latency, fire error)")
    p.add_argument("--line-rate", type=float, default=20.0, help="with --shadow: parts per second (default 20)")
    p.add_argument("--timing", choices=("thread", "process"), default="thread",
                   help="who times the reject pulses: the station's thread, or a process of its own (line.timing.process)")
    p.add_argument("--pulses", type=int, default=200, help="pulses to time per round (the frames are replayed "
                   "until there are as many parts; every part is fired)")
    p.add_argument("--ours", default=None,
                   help="our configurations, comma-separated: onnxruntime, openvino, openvino-int8 (our NNCF INT8 "
                        "bundle), with @N for N OpenVINO streams or :bf16 for bf16 compute (default: --backend)")
    p.add_argument("--sizes", default="bundle",
                   help="input sizes, comma-separated: 'bundle' (its own) and pixel sizes exported from --weights, e.g. 640")
    p.add_argument("--int8-model", default=None, help="our INT8 OpenVINO bundle at the bundle's size (default: exported "
                                                       "from the bundle with --data when openvino-int8 is asked for)")
    p.add_argument("--isa", default="", help="cap oneDNN's instruction set for every worker (ONEDNN_MAX_CPU_ISA), e.g. "
                                             "AVX2: OpenVINO then runs as on a CPU without AVX-512 and VNNI")
    args = p.parse_args(argv)
    if args.frames < 10:
        raise ConfigError(f"--frames {args.frames}: use at least 10 (the first 5 are warm-up)")
    sizes = [_size(v) for v in args.sizes.split(",") if v.strip()]
    ours = [_config(c) for c in args.ours.split(",") if c.strip()] if args.ours else None
    weights = Path(args.weights) if args.weights else None
    if weights is not None and not weights.is_file():
        raise ConfigError(f"--weights {weights}: file not found (the .pt the bundle was exported from)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.pulses < 1:
        raise ConfigError(f"--pulses {args.pulses}: at least 1 (issue #23 asks for 200 or more per round)")
    if args.shadow:
        result, text = _shadow(args, out)
    else:
        result = run(Path(args.model), args.frames, args.backend, args.threads, args.rounds, weights, args.data, out,
                     args.soak_minutes, ours=ours, sizes=sizes, int8=args.int8_model, isa=args.isa,
                     timing=args.timing, pulses=args.pulses)
        text = table(result)
    print(text)
    if args.json_out:
        dst = Path(args.json_out)
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_suffix(dst.suffix + ".tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        tmp.replace(dst)
        print(f"json: {dst}")
    return 0


def _shadow(args, out: Path) -> tuple[dict, str]:
    from ..bench import make_frames
    from ..bench_shadow import run_shadow, table_shadow

    if not (Path(args.shadow) / "model.json").is_file():
        raise ConfigError(f"--shadow {args.shadow}: not a bundle folder (no model.json)")
    if args.line_rate <= 0:
        raise ConfigError(f"--line-rate {args.line_rate}: parts per second must be above 0")
    frames = make_frames(out / "frames", min(args.frames, 50))
    result = run_shadow(Path(args.model), Path(args.shadow), frames, args.backend, args.threads, args.rounds,
                        args.line_rate, args.frames)
    return result, table_shadow(result)


def _size(value: str) -> int | None:
    value = value.strip()
    if value == "bundle":
        return None
    if not value.isdigit() or int(value) % 32:
        raise ConfigError(f"--sizes {value!r}: use 'bundle' or a pixel size that is a multiple of 32, e.g. 640")
    return int(value)


def _config(value: str) -> str:
    """One --ours entry, checked before anything is exported or timed."""
    from ..backends import NAMES

    value = value.strip()
    name, _, streams = value.partition("@")
    engine, _, compute = name.partition(":")
    if engine not in (*NAMES, "openvino-int8") or compute not in ("", "bf16", "f16") or (streams and not streams.isdigit()) \
            or (compute or streams) and not engine.startswith("openvino"):
        raise ConfigError(f"--ours {value!r}: use one of {', '.join((*NAMES, 'openvino-int8'))}; OpenVINO ones may end "
                          "in :bf16 (compute precision) and @N (N streams), e.g. openvino-int8@2")
    return value
