"""`defectgate replay --config station.yaml --source file:///data/shift [--speed recorded|max]`:
run the station on recorded images or video. At max speed no frame is dropped (the source waits
for the pipeline), so a replay judges every recorded frame; at recorded speed the line's
real-time behaviour (drops, deadlines) is reproduced.

`defectgate replay --config station.yaml --models A B --source SHIFT --out DIR`: what would model B
have done on the parts model A judged? Every frame is judged by both (A live with a simulated
ejector, B in lossless shadow mode), and DIR gets the part-level diff: diff.json (both NG, both OK,
only A NG, only B NG, per class; byte-identical for the same inputs), report.html, the disagreeing
images with both models' boxes, and the run's archive, whose disagreements the QA app's
Disagreements queue reviews and `defectgate promote --evidence replay --archive DIR/archive` counts.
SHIFT: a file:// URI or a path: a folder of images, a video, or a station archive folder (its kept images)."""

from __future__ import annotations

from pathlib import Path

from ..config import load_config
from ..errors import ConfigError
from .run import parser as run_parser
from .run import run_station


def _source_uri(source: str) -> str:
    """A file:// URI as given; a path as a file:// URI; a station archive folder as its images."""
    if "://" in source:
        if not source.startswith("file://"):
            raise ConfigError(f"--source {source!r}: replay reads file:// URIs or paths (a folder, an image, a video "
                              "or a station archive)")
        return source
    path = Path(source).absolute()
    if not path.exists():
        raise ConfigError(f"--source {source}: no such file or folder")
    if (path / "parts.sqlite").is_file():
        return f"file://{path / 'images'}?recursive=1"
    return f"file://{path}"


def main(argv: list[str]) -> int:
    p = run_parser("defectgate replay", __doc__)
    p.add_argument("--source", required=True,
                   help="file:// URI or path: an image, a folder of images, a video, or a station archive folder")
    p.add_argument("--speed", choices=["max", "recorded"], default="max")
    p.add_argument("--loop", type=int, default=1, help="replay the recording N times (soak runs)")
    p.add_argument("--models", nargs=2, metavar=("A", "B"), type=Path,
                   help="judge every frame with bundle A (as the line would) and bundle B (never acting), and write "
                        "the part-level diff to --out")
    p.add_argument("--out", type=Path, help="with --models: the folder for diff.json, report.html, images, archive")
    args = p.parse_args(argv)
    source = _source_uri(args.source)
    if args.models:
        return _diff(args, source)
    sep = "&" if "?" in source else "?"
    uri = f"{source}{sep}speed={args.speed}&loop={args.loop}"
    overrides = [f"source.uri={uri}"] + args.overrides
    if args.speed == "max":
        overrides.append("pipeline.overflow=block")
    return run_station(load_config(args.config, overrides), args.json)


REPLAY_DEADLINE_S = 5.0  # capture to ejector in `replay --models`: a run ends this long after its last frame


def _diff(args, source: str) -> int:
    from ..replay_diff import CELLS, replay_models

    if args.out is None:
        raise ConfigError("replay --models A B needs --out DIR for the diff")
    for m in args.models:
        if not (m / "model.json").is_file():
            raise ConfigError(f"--models: {m} is not a bundle folder (no model.json)")
    sep = "&" if "?" in source else "?"
    out = args.out.absolute()
    # the diff compares judgements, so no part may miss its decision deadline because the machine was
    # busy (a late OK becomes a fail-safe NG on a line): the ejector sits REPLAY_DEADLINE_S down the belt
    speed = load_config(args.config, args.overrides).conveyor.belt_speed_mm_s
    cfg = load_config(args.config, args.overrides + [
        f"conveyor.camera_to_ejector_mm={speed * REPLAY_DEADLINE_S}",
        f"source.uri={source}{sep}speed=max", f"model.bundle={args.models[0].absolute()}", "model.watch_s=0",
        f"shadow.bundle={args.models[1].absolute()}", "shadow.lossless=true", "shadow.watch_s=0",
        "pipeline.overflow=block", "actuator.kind=simulated", "actuator.options={}", "alarm.kind=simulated",
        "alarm.options={}", "line={}", "archive.enabled=true",  # no PLC, no line outputs: nothing on the line moves
        f"station.run_dir={out}", "telemetry.prometheus_port=null", "telemetry.mqtt_host=null"])
    d = replay_models(cfg, out)
    print(f"replay diff: A = {d['models']['a']}, B = {d['models']['b']}, {d['parts']} parts, agreement {d['agreement']}")
    for c in CELLS:
        print(f"  {c:<10} {d['counts'][c]}")
    print(f"  unreadable frames {d['unreadable']['count']}, parts without both verdicts {d['unjudged']['count']}")
    print(f"diff: {out / 'diff.json'}  report: {out / 'report.html'}  archive: {out / 'archive'}")
    return 0
