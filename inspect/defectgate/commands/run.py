"""`defectgate run --config station.yaml [--set key=value ...]`: run the station until the source
ends or SIGTERM/SIGINT, then flush the archive and print the line report."""

from __future__ import annotations

import argparse
import json
import signal

from ..config import load_config
from ..report import format_report, line_report, write_report
from ..station import build_station


def parser(prog: str = "defectgate run", doc: str | None = __doc__) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=doc)
    p.add_argument("--config", required=True, help="station config YAML (see configs/demo-station.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set model.backend=onnxruntime (repeatable)")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    return p


def run_station(cfg, as_json: bool = False) -> int:
    built = build_station(cfg)
    station = built.station

    def _stop(signum, _frame):  # finish the parts in flight, fire their rejects, flush the archive
        station.stop.set()

    previous = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        stats = station.run()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    report = line_report(stats, station.inspector.backend.name, station.inspector.version, built.alarm, station.source)
    if built.archive is not None:
        built.archive.end_run(report)
    built.close()
    if built.archive is not None:
        report["archive"] = {"rows": built.archive.stats.rows, "images": built.archive.stats.images,
                             "images_dropped": built.archive.stats.images_dropped, "path": str(built.archive.root)}
    path = write_report(report, built.run_dir)
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
        print(f"report: {path}")
    return 0


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    return run_station(load_config(args.config, args.overrides), args.json)
