"""`defectgate bench --model BUNDLE --frames N --json out.json [--backend B | --ours C1,C2,...]
[--sizes bundle,640] [--weights best.pt --data data.yaml] [--rounds R] [--isa AVX2] [--soak-minutes M]`:
raw inference vs the full per-frame pipeline, the fixed cost around the engine, pipelined throughput
and engine-busy fraction, fire-time error under inference load, peak RSS, and, when ultralytics is
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
    result = run(Path(args.model), args.frames, args.backend, args.threads, args.rounds, weights, args.data, out,
                 args.soak_minutes, ours=ours, sizes=sizes, int8=args.int8_model, isa=args.isa)
    print(table(result))
    if args.json_out:
        dst = Path(args.json_out)
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_suffix(dst.suffix + ".tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        tmp.replace(dst)
        print(f"json: {dst}")
    return 0


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
