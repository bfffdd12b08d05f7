"""`defectgate replay --config station.yaml --source file:///data/shift [--speed recorded|max]`:
run the station on recorded images or video. At max speed no frame is dropped (the source waits
for the pipeline), so a replay judges every recorded frame; at recorded speed the line's
real-time behaviour (drops, deadlines) is reproduced."""

from __future__ import annotations

from ..config import load_config
from ..errors import ConfigError
from .run import parser as run_parser
from .run import run_station


def main(argv: list[str]) -> int:
    p = run_parser("defectgate replay", __doc__)
    p.add_argument("--source", required=True, help="file:// URI of an image, a folder of images or a video")
    p.add_argument("--speed", choices=["max", "recorded"], default="max")
    p.add_argument("--loop", type=int, default=1, help="replay the recording N times (soak runs)")
    args = p.parse_args(argv)
    if not args.source.startswith("file://"):
        raise ConfigError(f"--source {args.source!r}: replay reads file:// URIs (a folder, an image or a video)")
    sep = "&" if "?" in args.source else "?"
    uri = f"{args.source}{sep}speed={args.speed}&loop={args.loop}"
    overrides = [f"source.uri={uri}"] + args.overrides
    if args.speed == "max":
        overrides.append("pipeline.overflow=block")
    return run_station(load_config(args.config, overrides), args.json)
