"""`defectgate engine build --bundle B --precision fp32|fp16|int8 [--calib DIR] [--out DIR]`: build a
TensorRT engine bundle from an ONNX bundle, on the device that will run it (needs an NVIDIA GPU,
TensorRT and cuda-python: on a Jetson from JetPack, elsewhere `pip install 'defectgate[gpu]'`)."""

from __future__ import annotations

import argparse
import json

from ..engine_build import PRECISIONS, build_engine


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="defectgate engine", description=__doc__)
    sub = p.add_subparsers(dest="action", required=True)
    b = sub.add_parser("build", help="build a TensorRT engine bundle from an ONNX bundle")
    b.add_argument("--bundle", required=True, help="ONNX bundle folder (model.onnx + model.json)")
    b.add_argument("--precision", choices=PRECISIONS, default="fp16", help="engine precision (default fp16)")
    b.add_argument("--calib", help="folder of calibration images (required for int8; e.g. the dataset's train/images)")
    b.add_argument("--calib-limit", type=int, default=500,
                   help="use at most this many calibration images, spread over the sorted folder (default 500)")
    b.add_argument("--out", help="engine bundle folder (default: <bundle>-tensorrt-<precision> beside the bundle)")
    b.add_argument("--workspace-gb", type=float, default=2.0, help="builder workspace limit in GiB (default 2)")
    b.add_argument("--timing-cache", help="timing cache file, reused across builds (default: beside --out)")
    b.add_argument("--device", type=int, default=0, help="CUDA device index (default 0)")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    result = build_engine(args.bundle, args.precision, args.calib, args.out, args.workspace_gb,
                          args.timing_cache, args.calib_limit, args.device)
    print(json.dumps({"bundle": str(result.bundle_dir), "precision": result.precision,
                      "build_seconds": round(result.seconds, 1), "engine_info": result.engine_info}, indent=2))
    return 0
