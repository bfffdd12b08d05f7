"""defectgate evaluate: mAP and part-level escape/overkill of a .pt or a bundle (through the runtime)."""

from __future__ import annotations

import argparse


def main(argv: list[str]) -> int:
    from defectgate.tta import PRESETS

    from ..torch_backend import HEADS  # the one list of heads, beside load_torch_model

    p = argparse.ArgumentParser(prog="defectgate evaluate", description=(
        "Box mAP and part-level escape/overkill rates. A bundle runs through the station's own backend, "
        "preprocessing and decode; a .pt through PyTorch on the same letterbox."))
    p.add_argument("--model", required=True, help="bundle folder (model.json), or a .pt checkpoint")
    p.add_argument("--data", required=True, help="dataset yaml")
    p.add_argument("--split", default="val", help="train, val or test (default val)")
    p.add_argument("--json", help="write the result JSON here")
    p.add_argument("--plots", help="folder for PR curves, confusion matrix, escape/overkill vs threshold (PNG)")
    p.add_argument("--target-escape", type=float, default=0.02,
                   help="calibrate per-class thresholds to this escape rate on the split (default 0.02)")
    p.add_argument("--no-calibrate", action="store_true", help="report at the model's own thresholds")
    p.add_argument("--calib-data", help="calibrate the thresholds on this dataset yaml's --calib-split instead of on "
                                        "the reported split (e.g. a `defectgate data halves` calib.yaml)")
    p.add_argument("--calib-split", default="val", help="split of --calib-data to calibrate on (default val)")
    p.add_argument("--backend", default="auto", help="bundle backend: auto, onnxruntime, openvino, tensorrt, ...")
    p.add_argument("--imgsz", type=int, help="input size for a .pt (default: its training size)")
    p.add_argument("--head", choices=HEADS, default="auto",
                   help="for a .pt with two heads (YOLO26): auto/nms-free runs the one-to-one head, nms the "
                        "one-to-many head with NMS; match the bundle's `defectgate export --head`. A bundle runs "
                        "the head it was exported with and refuses the other one")
    p.add_argument("--tta", choices=tuple(PRESETS),
                   help="for a .pt: also judge the mirror images (hflip, hvflip) and the shrunk frame (hvflip-ms) and "
                        "merge what the views see (as `defectgate export --tta`); a bundle runs the views its sidecar "
                        "declares and refuses others")
    p.add_argument("--part-score", action="store_true",
                   help="decide each part by a part score fitted on the calibration parts (as `defectgate export "
                        "--part-score`) instead of any box above its class threshold; both are reported")
    a = p.parse_args(argv)
    from defectgate.staging import write_json_atomic

    from ..evaluate import evaluate_model

    r = evaluate_model(a.model, a.data, a.split, None if a.no_calibrate else a.target_escape, a.backend, a.plots, a.imgsz,
                       head=a.head, tta=a.tta, calib_data=a.calib_data, calib_split=a.calib_split,
                       part_score=a.part_score)
    print(f"{r['runs_on']} on {r['split']} ({r['images']} images)")
    print(f"mAP50 {r['map50']:.4f}  mAP50-95 {r['map50_95']:.4f}")
    print(f"{'class':<18}{'boxes':>7}{'AP50':>8}{'AP50-95':>9}{'P':>7}{'R':>7}{'thr':>7}")
    for name, c in r["per_class"].items():
        if c["ap50"] is None:
            print(f"{name:<18}{0:>7}{'-':>8}{'-':>9}{'-':>7}{'-':>7}{c['threshold']:>7.3f}")
            continue
        print(f"{name:<18}{c['gt_boxes']:>7}{c['ap50']:>8.3f}{c['ap50_95']:>9.3f}{c['precision']:>7.3f}{c['recall']:>7.3f}{c['threshold']:>7.3f}")
    pr = r["parts"]
    if r["decision"] == "part_score":
        ab, ps = r["any_box"], r["part_score"]
        print(f"any box above its class threshold: escape {ab['escapes']}/{ab['ng_parts']}, overkill "
              f"{ab['overkills']}/{ab['ok_parts']}; decided by the part score at {ps['threshold']:.4f} "
              f"(fitted on {ps['fitted_on']}):")

    def fmt(rate, ci):
        return "n/a (no OK parts)" if rate is None else f"{rate:.4f} (95 % CI {ci[0]:.3f}-{ci[1]:.3f})"

    print(f"parts {pr['parts']} (NG {pr['ng_parts']}, OK {pr['ok_parts']}): "
          f"escape rate {fmt(pr['escape_rate'], pr['escape_rate_ci95'])} ({pr['escapes']} NG passed), "
          f"overkill rate {fmt(pr['overkill_rate'], pr['overkill_rate_ci95'])} ({pr['overkills']} OK rejected)")
    if pr["escape_rate_upper95"] is not None:
        print(f"escape <= {100 * pr['escape_rate_upper95']:.2f} % at 95 % confidence (one-sided Clopper-Pearson, "
              f"{pr['ng_parts']} NG parts); thresholds calibrated on {r['calibrated_on'] or 'none (own)'}")
    for m in r.get("matched_escape") or []:  # the two decisions at the same escape, off this split's curves
        ab, ps = m["any_box"], m["part_score"]
        print(f"at most {m['escapes_allowed']} NG passed (curves of this split): overkill any box "
              f"{ab['overkills']}/{pr['ok_parts']}, part score {ps['overkills']}/{pr['ok_parts']}")
    if a.json:
        write_json_atomic(a.json, r)
        print(f"wrote {a.json}")
    return 0
