"""defectgate parity: ORT CPU against other backends and precisions, on the same images."""

from __future__ import annotations

import argparse
import json


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="defectgate parity", description=(
        "Run the same images through a reference bundle/backend and each candidate, through the station's "
        "own preprocessing and decode; report max box and score differences and mAP50 on a split. "
        "Exit 1 when a candidate's mAP50 drops by more than --max-map-drop."))
    p.add_argument("--reference", default=None, help="BUNDLE[:BACKEND] (default: the first candidate's bundle on onnxruntime)")
    p.add_argument("--candidate", action="append", required=True, metavar="BUNDLE[:BACKEND]",
                   help="e.g. runs/demo/bundle:openvino, runs/demo/bundle-fp16, runs/demo/engine-fp16:tensorrt (repeatable)")
    p.add_argument("--data", required=True, help="dataset yaml: images for the comparison and the split for mAP")
    p.add_argument("--split", default="val")
    p.add_argument("--images", type=int, default=32, help="images compared detection by detection (default 32)")
    p.add_argument("--max-map-drop", type=float, default=0.005,
                   help="largest allowed mAP50 drop against the reference (FP16 0.005, INT8 0.02)")
    p.add_argument("--json", help="write the report here")
    a = p.parse_args(argv)
    from defectgate.bundle import load_bundle
    from defectgate.staging import write_json_atomic

    from ..backend_parity import Target, compare_backends
    from ..evaluate import evaluate_model
    from ..export import PARITY, sample_images

    cands = [Target.parse(c) for c in a.candidate]
    ref = Target.parse(a.reference) if a.reference else Target(cands[0].bundle, "onnxruntime")
    imgsz = load_bundle(ref.bundle).sidecar.input.imgsz[0]
    images = sample_images(a.data, a.split, a.images, imgsz)
    rows = compare_backends(ref, cands, images, PARITY["fp32"])
    ref_map = evaluate_model(ref.bundle, a.data, a.split, None, ref.backend)["map50"]
    failed = False
    print(f"reference {ref}: mAP50 {ref_map:.4f} on {a.split}")
    print(f"{'candidate':<44}{'runs on':<34}{'matched':>8}{'mismatch':>9}{'box px':>8}{'score':>8}{'mAP50':>8}{'drop':>8}")
    for row, cand in zip(rows, cands):
        m = evaluate_model(cand.bundle, a.data, a.split, None, cand.backend)["map50"]
        row.update({"map50": m, "map50_drop": round(ref_map - m, 4), "within_map_tolerance": ref_map - m <= a.max_map_drop})
        failed |= not row["within_map_tolerance"]
        print(f"{str(cand):<44}{row['runs_on']:<34}{row['detections_matched']:>8}{row['mismatches']:>9}"
              f"{row['max_box_px']:>8.3f}{row['max_score_diff']:>8.4f}{m:>8.4f}{ref_map - m:>8.4f}")
    report = {"reference": str(ref), "reference_map50": ref_map, "split": a.split, "max_map_drop": a.max_map_drop,
              "candidates": rows}
    if a.json:
        write_json_atomic(a.json, report)
    else:
        print(json.dumps({"passed": not failed}))
    return 1 if failed else 0
