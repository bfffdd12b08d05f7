"""`defectgate data synth|import|validate|split|halves|okparts|stats|merge`: build and check YOLO datasets."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from defectgate.errors import DatasetError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="defectgate data", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True,
                           metavar="{synth,import,validate,split,halves,okparts,stats,merge}")

    s = sub.add_parser("synth", help="render the synthetic parts dataset (the embedded default)")
    s.add_argument("--out", required=True, type=Path, help="dataset folder to create")
    s.add_argument("--images", type=int, default=600, help="number of images (default 600)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--ng-rate", type=float, default=0.4, help="fraction of parts with defects (default 0.4)")
    s.add_argument("--imgsz", type=int, nargs=2, metavar=("H", "W"), default=(240, 320),
                   help="image height and width in pixels (default 240 320)")
    s.add_argument("--val-frac", type=float, default=0.2, help="fraction for the val split (default 0.2)")
    s.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    s.add_argument("--workers", type=int, default=0, help="render processes (default: automatic, at most 4)")

    i = sub.add_parser("import", help="convert Pascal VOC / COCO / YOLO annotations into a YOLO dataset")
    i.add_argument("--format", required=True, choices=("voc", "coco", "yolo"))
    i.add_argument("src", type=Path, help="source folder (or COCO .json file)")
    i.add_argument("dst", type=Path, help="dataset folder to create")
    i.add_argument("--classes", help="class names in id order: 'a,b,c' or a file with one per line "
                   "(default: from the source)")
    i.add_argument("--val", type=float, default=0.2, help="val fraction when the source has no splits")
    i.add_argument("--test", type=float, default=0.0, help="test fraction when the source has no splits")
    i.add_argument("--seed", type=int, default=0)
    i.add_argument("--overwrite", action="store_true")

    v = sub.add_parser("validate", help="check images, labels, classes and duplicates; exit 2 on errors")
    v.add_argument("dataset", type=Path, help="dataset folder or its data.yaml")
    v.add_argument("--json", action="store_true", help="print the full report as JSON")
    v.add_argument("--show-info", type=int, default=5, help="how many OK-part notes to list (default 5)")

    sp = sub.add_parser("split", help="stratified, seeded train/val/test split into a new dataset")
    sp.add_argument("dataset", type=Path, help="a YOLO dataset, or a folder of images (+ labels) without splits")
    sp.add_argument("--out", type=Path, help="new dataset folder (default: replace DATASET in place, atomically)")
    sp.add_argument("--val", type=float, default=0.2)
    sp.add_argument("--test", type=float, default=0.0)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--classes", help="class names when the folder has no data.yaml or classes.txt")
    sp.add_argument("--overwrite", action="store_true", help="replace --out if it exists")

    hv = sub.add_parser("halves", help="two disjoint halves of a split: calibrate thresholds on one, gate on the other")
    hv.add_argument("dataset", type=Path, help="dataset folder or its data.yaml")
    hv.add_argument("--split", default="val", help="the split to halve (default val)")
    hv.add_argument("--out", required=True, type=Path, help="folder for calib.yaml, gate.yaml and their lists")
    hv.add_argument("--seed", type=int, default=0)

    ok = sub.add_parser("okparts", help="OK parts for an all-defective split: a defect-free crop of each image "
                        "(empty label) beside the image itself")
    from ..okparts import add_arguments

    add_arguments(ok)

    st = sub.add_parser("stats", help="per-class counts, OK/NG parts, box sizes, image sizes")
    st.add_argument("dataset", type=Path)
    st.add_argument("--json", action="store_true", help="print JSON instead of tables")

    m = sub.add_parser("merge", help="merge dataset increments (e.g. QA exports) into a base dataset")
    m.add_argument("base", type=Path)
    m.add_argument("increments", type=Path, nargs="+")
    m.add_argument("--out", required=True, type=Path)
    m.add_argument("--overwrite", action="store_true")
    return p


def _summary(manifest: dict, out: Path) -> str:
    splits = ", ".join(f"{k} {v['images']} ({v['ng']} NG, {v['ok']} OK)" for k, v in manifest["splits"].items())
    boxes = ", ".join(f"{k} {v}" for k, v in manifest["boxes_per_class"].items())
    return f"wrote {Path(out).absolute()}: {splits}; boxes: {boxes}"


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.cmd == "synth":
        from ..data.synth import synthesize

        man = synthesize(args.out, args.images, args.seed, args.ng_rate, tuple(args.imgsz), args.val_frac,
                         args.overwrite, args.workers)
        if man.get("reused"):
            print(f"{Path(args.out).absolute()} is up to date (same generator and parameters); kept it. "
                  "Pass --overwrite to render again.")
        else:
            print(_summary(man, args.out) + f" in {man['seconds']:.1f} s")
        return 0
    if args.cmd == "import":
        from ..data.importers import import_dataset
        from ..data.layout import class_names_from_arg

        man = import_dataset(args.format, args.src, args.dst, class_names_from_arg(args.classes), args.val,
                             args.test, args.seed, args.overwrite)
        print(_summary(man, args.dst))
        return 0
    if args.cmd == "validate":
        from ..data.validate import format_report, validate

        rep = validate(args.dataset)
        if args.json:
            print(json.dumps(rep.to_dict(), indent=2))
        else:
            print(format_report(rep, show_info=args.show_info))
        if not rep.ok:
            print(f"defectgate data validate: {len(rep.of('error'))} errors in {rep.dataset}", file=sys.stderr)
            return 2
        return 0
    if args.cmd == "split":
        from ..data.layout import class_names_from_arg
        from ..data.split import split_dataset

        out = args.out or args.dataset
        man = split_dataset(args.dataset, args.out, args.val, args.test, args.seed,
                            class_names_from_arg(args.classes), args.overwrite)
        print(_summary(man, out))
        return 0
    if args.cmd == "halves":
        from ..data.halves import write_halves

        man = write_halves(args.dataset, args.out, args.split, args.seed)
        print(f"wrote {Path(args.out).absolute()}: " + ", ".join(
            f"{h} {c['images']} ({c['ng']} NG, {c['ok']} OK)" for h, c in man["halves"].items()))
        return 0
    if args.cmd == "okparts":
        from ..okparts import run

        print(run(args))
        return 0
    if args.cmd == "stats":
        from ..data.stats import compute_stats, format_stats

        st = compute_stats(args.dataset)
        print(json.dumps(st, indent=2) if args.json else format_stats(st))
        return 0
    if args.cmd == "merge":
        from ..data.merge import merge_datasets

        man = merge_datasets(args.base, args.increments, args.out, args.overwrite)
        dup = sum(s["already_present"] for s in man["sources"])
        print(_summary(man, args.out) + f"; {dup} duplicate images merged")
        return 0
    raise DatasetError(f"unknown data subcommand {args.cmd!r}")  # argparse prevents this
