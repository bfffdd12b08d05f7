"""defectgate export: trained weights -> ONNX bundle (model.onnx + model.json), parity-checked."""

from __future__ import annotations

import argparse


def main(argv: list[str]) -> int:
    from defectgate.tta import PRESETS

    from ..torch_backend import HEADS  # the one list of heads, beside load_torch_model

    p = argparse.ArgumentParser(prog="defectgate export", description=(
        "Export to an ONNX bundle, check PyTorch/ONNX parity through the runtime path, calibrate the "
        "per-class thresholds on the val split. --int8 adds ONNX Runtime static QDQ quantization."))
    p.add_argument("--weights", required=True, help="trained .pt (e.g. runs/train/weights/best.pt)")
    p.add_argument("--out", required=True, help="bundle folder to write")
    p.add_argument("--data", help="dataset yaml: parity images, class check, threshold calibration")
    p.add_argument("--imgsz", type=int, help="input size (default: the training size)")
    p.add_argument("--half", action="store_true", help="FP16 weights (float32 input/output kept)")
    p.add_argument("--int8", action="store_true", help="also write OUT-int8: INT8 QDQ for CPU stations (ONNX Runtime static quantization)")
    p.add_argument("--calib", help="folder of images (or a dataset yaml) for INT8 calibration")
    p.add_argument("--calib-images", type=int, default=200, help="at most this many calibration images")
    p.add_argument("--target-escape", type=float, default=0.02, help="escape rate the thresholds are calibrated to")
    p.add_argument("--no-calibrate", action="store_true", help="keep the default thresholds")
    p.add_argument("--head", choices=HEADS, default="auto",
                   help="YOLO26-style models have two heads: auto/nms-free ships the NMS-free one-to-one head "
                        "(end2end output), nms the one-to-many head whose boxes the runtime NMSes (more accurate "
                        "after short from-scratch training, see docs/accuracy.md); other models always use nms")
    p.add_argument("--tta", choices=tuple(PRESETS), default="none",
                   help="judge every frame also as its mirror image(s) (hflip: 2 inferences per frame, hvflip: 4) "
                        "and shrunk (hvflip-ms: hvflip at scales 1, 0.83, 0.67, 12 inferences) and merge what they "
                        "see (docs/accuracy.md); the thresholds are calibrated with it")
    p.add_argument("--no-view-batch", action="store_true",
                   help="with --tta: keep the model at batch 1 and run the views one inference each "
                        "(default: the views are the model's batch, one inference per frame)")
    p.add_argument("--part-score", action="store_true",
                   help="the bundle decides each part by a part score (the best score of each class, the runner-up, "
                        "box count and size) fitted on --data's val split and calibrated to --target-escape, instead of "
                        "any box above its class threshold; declared in the sidecar (key part_score)")
    p.add_argument("--parity-images", type=int, default=8)
    p.add_argument("--engine", choices=("onnxruntime", "openvino"), default="onnxruntime",
                   help="engine of the extra export: onnxruntime (INT8 QDQ ONNX) or openvino (with --int8: an NNCF INT8 "
                        "IR bundle, accuracy-checked on --data's val split; without: an FP32 IR beside the ONNX)")
    a = p.parse_args(argv)
    from defectgate.errors import ConfigError

    from ..export import export_bundle

    if a.int8 and a.half:
        raise ConfigError("--int8 and --half exclude each other; choose one precision")
    if a.int8 and not (a.calib or a.data):
        raise ConfigError("--int8 needs --calib DIR (images like the line's) or --data to calibrate on")
    r = export_bundle(a.weights, a.out, a.data, a.imgsz, half=a.half, parity_images=a.parity_images,
                      calibrate=not a.no_calibrate, target_escape=a.target_escape, head=a.head, tta=a.tta,
                      view_batch=not a.no_view_batch, part_score=a.part_score)
    sc, par = r.sidecar, r.parity
    print(f"bundle {r.bundle}: {sc['architecture']} {sc['precision']} {sc['output']['layout']} {sc['input']['imgsz']} "
          f"tta {a.tta} classes {sc['classes']}")
    print(f"parity vs PyTorch: {par['detections_compared']} detections on {par['images']} images, "
          f"max score diff {par['max_score_diff']}, max box diff {par['max_box_px']} px (tolerance {par['tolerance']})")
    if r.evaluation:
        e = r.evaluation
        print(f"val: mAP50 {e['map50']:.4f} mAP50-95 {e['map50_95']:.4f} escape {e['escape_rate']} "
              f"overkill {e['overkill_rate']} " + (f"at part score {e['part_score']['threshold']}" if e["part_score"]
                                                   else f"at thresholds {e['thresholds']}"))
    if a.engine == "openvino":
        from ..openvino_int8 import export_openvino_int8, export_openvino_ir

        if not a.int8:
            print(f"openvino IR beside the ONNX in {export_openvino_ir(r.bundle)}")
            return 0
        q = export_openvino_int8(r.bundle, a.calib or a.data, r.bundle.with_name(r.bundle.name + "-openvino-int8"),
                                 val_images=a.data, calib_limit=a.calib_images)
        print(f"openvino int8 bundle {q.bundle_dir}: {q.mode}, {q.calibration_images} calibration images, {q.metrics}")
        if a.data and not a.no_calibrate:
            from ..openvino_int8 import calibrate_like_fp32

            e = calibrate_like_fp32(q.bundle_dir, a.data)
            if e:
                print(f"int8 val: mAP50 {e['map50']:.4f} escape {e['escape_rate']} overkill {e['overkill_rate']} "
                      f"at its own thresholds {e['thresholds']} (escape target: FP32's)")
        return 0
    if a.int8:
        from ..quantize import quantize_bundle

        q = quantize_bundle(r.bundle, a.calib or a.data, r.bundle.with_name(r.bundle.name + "-int8"),
                            max_images=a.calib_images, data=a.data)
        print(f"int8 bundle {q['bundle']}: {q['summary']}")
    return 0
