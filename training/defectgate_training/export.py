"""Export trained weights to a model bundle: `model.onnx` + `model.json`.

The sidecar is written here as a plain dict that follows `defectgate.bundle.Sidecar` (export and
runtime agree through the file, not through shared code; its network sections come from
torch_backend.network_sections, which the PyTorch stand-in of `evaluate --model best.pt` uses too).
After writing, the bundle is loaded back through the runtime's one path (a `defectgate.detector.Detector`
on ONNX Runtime) and compared with the PyTorch network behind the same Detector, on the same
preprocessed images: the export fails, leaving nothing behind, when detections differ beyond PARITY
(below). Then the operating point is calibrated on the val split through that same runtime path
(`evaluate_model`, test-time views on) and stored in the sidecar.

Everything is built in a temporary folder beside OUT and renamed into place at the end.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from defectgate.detector import Detector
from defectgate.errors import BundleError, ConfigError, DefectgateError
from defectgate.images import read_image
from defectgate.postprocess import pairwise_iou
from defectgate.staging import staged_dir, write_json_atomic

from .datayaml import fingerprint, load_data_yaml, split_images
from .torch_backend import TorchBackend, head_strides, layout_of, load_torch_model, network_sections
from .train import tool_versions
from .ultra import ultralytics

log = logging.getLogger(__name__)


class ParityError(DefectgateError):
    """The exported model's detections differ from the PyTorch model's beyond tolerance."""


@dataclass(frozen=True)
class ParityTolerance:
    """A detection with score >= conf in one model must have a same-class partner in the other with
    score >= conf - margin, IoU >= iou, |score difference| <= score and corners within box_px
    (source pixels). FP32 ONNX Runtime vs PyTorch differs by ~1e-4; FP16 needs the looser preset."""

    conf: float = 0.10
    margin: float = 0.03
    iou: float = 0.90
    score: float = 0.02
    box_px: float = 1.0


PARITY = {"fp32": ParityTolerance(), "fp16": ParityTolerance(score=0.03, box_px=2.0, iou=0.85)}


@dataclass
class ExportResult:
    bundle: Path
    sidecar: dict
    parity: dict
    evaluation: dict | None = None
    notes: list[str] = field(default_factory=list)


def detect_layout(onnx_path: Path, num_classes: int) -> tuple[str, list, str, str]:
    """Read the exported graph's output shape: (1, 4+nc, A) is yolo_raw, (1, N, 6) is end2end."""
    import onnx

    m = onnx.load(str(onnx_path))
    out = m.graph.output[0]
    dims = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in out.type.tensor_type.shape.dim]
    return layout_of(dims, num_classes, f"{onnx_path}: output '{out.name}'"), dims, out.name, m.graph.input[0].name


def sample_images(data: str | None, split: str, n: int, imgsz: int, seed: int = 0) -> list[np.ndarray]:
    """Images for the parity check: the first n of the split, or seeded noise when no data is given."""
    if data:
        spec = load_data_yaml(data)
        use = split if split in spec.splits else "train"
        return [read_image(p) for p in split_images(spec, use)[:n]]
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (imgsz, imgsz, 3), dtype=np.uint8) for _ in range(n)]


def compare_detections(a, b_loose, tol: ParityTolerance) -> tuple[int, list[str], float, float]:
    """Every detection of `a` must have a partner in `b_loose`. Returns (matched, problems, max box
    corner difference, max score difference)."""
    problems, max_box, max_score = [], 0.0, 0.0
    if len(a) == 0:
        return 0, problems, max_box, max_score
    if len(b_loose) == 0:
        return 0, [f"{len(a)} detection(s) have no partner at all"], max_box, max_score
    iou = pairwise_iou(a.xyxy, b_loose.xyxy)
    iou[a.class_id[:, None] != b_loose.class_id[None, :]] = 0
    for i in range(len(a)):
        near = np.flatnonzero(iou[i] >= tol.iou)
        if not len(near):
            problems.append(f"box {a.xyxy[i].round(1).tolist()} class {a.class_id[i]} score {a.confidence[i]:.3f} "
                            f"has no partner (best IoU {iou[i].max():.2f} < {tol.iou})")
            continue
        # of the overlapping partners (near-duplicate boxes are common before NMS ties are broken),
        # take the one that agrees best in corners and score, each measured against its tolerance
        d_boxes = np.abs(a.xyxy[i] - b_loose.xyxy[near]).max(1)
        d_scores = np.abs(a.confidence[i] - b_loose.confidence[near])
        k = int(np.argmin(np.maximum(d_boxes / tol.box_px, d_scores / tol.score)))
        d_box, d_score = float(d_boxes[k]), float(d_scores[k])
        max_box, max_score = max(max_box, d_box), max(max_score, d_score)
        if d_box > tol.box_px or d_score > tol.score:
            problems.append(f"box {a.xyxy[i].round(1).tolist()} differs by {d_box:.2f} px, score by {d_score:.3f}")
    return len(a), problems, max_box, max_score


def parity_check(bundle_dir: Path, torch_model, images: list[np.ndarray], tol: ParityTolerance) -> dict:
    """Run the same images through PyTorch and through the runtime's ONNX path, each behind the
    bundle's Detector, and compare: the raw head outputs, then the Detections both ways."""
    from defectgate.bundle import load_bundle

    bundle = load_bundle(bundle_dir)
    sc = bundle.sidecar
    loose = max(tol.conf - tol.margin, 0.0)
    # the network against the network: test-time views are measured by the calibration, not here
    by_onnx = Detector(bundle, backend_name="onnxruntime", conf_floor=loose, views=False)
    by_torch = Detector(bundle, TorchBackend(torch_model), conf_floor=loose, views=False)
    matched, problems, max_box, max_score, max_raw = 0, [], 0.0, 0.0, 0.0
    try:
        for k, img in enumerate(images):
            batch, info = by_onnx.prepare(img)
            feed = np.repeat(batch, sc.input.batch, 0) if sc.input.batch > 1 else batch  # a view-batch model: row 0
            raw_onnx = np.asarray(by_onnx.infer(feed)[0], np.float32)[:1]
            raw_pt = by_torch.infer(batch)[0]
            if raw_pt.shape != raw_onnx.shape:
                raise ParityError(f"output shapes differ: PyTorch {raw_pt.shape}, ONNX {raw_onnx.shape}")
            max_raw = max(max_raw, float(np.abs(raw_pt - raw_onnx).max()))
            if sc.output.layout == "yolo_raw":  # also every candidate anchor, not only the boxes NMS keeps
                pt, ox = raw_pt.reshape(raw_pt.shape[-2:]), raw_onnx.reshape(raw_onnx.shape[-2:])
                live = np.maximum(pt[4:].max(0), ox[4:].max(0)) >= max(tol.conf - tol.margin, 0.0)
                if live.any():
                    d_box = float(np.abs(pt[:4][:, live] - ox[:4][:, live]).max()) / info.gain
                    d_score = float(np.abs(pt[4:][:, live] - ox[4:][:, live]).max())
                    max_box, max_score = max(max_box, d_box), max(max_score, d_score)
                    if d_box > tol.box_px or d_score > tol.score:
                        problems.append(f"image {k}: raw head output differs on {int(live.sum())} candidate anchors "
                                        f"by up to {d_box:.2f} px and {d_score:.3f} score")
            sides = ((by_torch, raw_pt), (by_onnx, raw_onnx))
            for (da, xa), (db, xb) in (sides, sides[::-1]):  # each model's detections need a partner in the other
                m, p, b, s = compare_detections(da.decode([xa], info, conf=tol.conf), db.decode([xb], info), tol)
                matched += m
                problems += [f"image {k}: {q}" for q in p]
                max_box, max_score = max(max_box, b), max(max_score, s)
    finally:
        by_onnx.close()
        by_torch.close()
    report = {"images": len(images), "detections_compared": matched, "max_box_px": round(max_box, 4),
              "max_score_diff": round(max_score, 5), "max_raw_abs_diff": round(max_raw, 5),
              "tolerance": tol.__dict__, "passed": not problems}
    if problems:
        raise ParityError(f"{bundle_dir}: ONNX and PyTorch detections differ beyond tolerance "
                          f"(score ±{tol.score}, IoU ≥ {tol.iou}, corners ±{tol.box_px} px): {problems[0]}"
                          + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""))
    return report


def build_sidecar(onnx_path: Path, names: list[str], imgsz: int, arch: str, precision: str,
                  training: dict, strides: list[int], tta: dict) -> dict:
    from defectgate.bundle import sha256_file  # hashing only; the sidecar itself is our own dict

    layout, dims, out_name, in_name = detect_layout(onnx_path, len(names))
    return {
        "format": "defectgate-bundle",
        "schema_version": 1,
        "model_file": onnx_path.name,
        "sha256": sha256_file(onnx_path),
        "engine": "onnx",
        "precision": precision,
        "architecture": arch,
        **network_sections(names, imgsz, layout, dims, strides, tta, in_name, out_name),
        "class_thresholds": {},
        "metrics": {},
        "training": training,
        "versions": tool_versions(),
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "version": "",
        "engine_info": {},
        "source_onnx_sha256": "",
    }


def _training_facts(weights: Path, data: str | None, train_args: dict) -> dict:
    from defectgate.bundle import sha256_file

    facts = {"weights": str(weights), "weights_sha256": sha256_file(weights),
             "epochs": train_args.get("epochs"), "imgsz": train_args.get("imgsz"), "seed": train_args.get("seed")}
    run_json = weights.parent.parent / "run.json"
    if run_json.is_file():
        run = json.loads(run_json.read_text())
        facts.update({"data_fingerprint": run.get("data", {}).get("sha256"), "images": run.get("data", {}).get("images"),
                      "train_seconds": run.get("train_seconds"), "device": run.get("device"),
                      "epochs_done": run.get("epochs_done"), "augment": run.get("augment"),
                      "val_map50_ultralytics": run.get("map50"), "val_map50_95_ultralytics": run.get("map50_95"),
                      "data_fingerprint_source": str(run_json)})
    elif data:
        # The weights were moved out of their run folder: the training data is unknown here, so the
        # fingerprint is of the export's --data and says so.
        fp = fingerprint(load_data_yaml(data))
        facts.update({"data_fingerprint": fp["sha256"], "images": fp["images"],
                      "data_fingerprint_source": f"--data {data} (no run.json beside the weights)",
                      "train_data": train_args.get("data")})
    return facts


def export_bundle(weights: str | Path, out: str | Path, data: str | None = None, imgsz: int | None = None,
                  half: bool = False, parity_images: int = 8, calibrate: bool = True,
                  target_escape: float = 0.02, split: str = "val", opset: int = 17,
                  head: str = "auto", tta: str = "none", view_batch: bool = True,
                  part_score: bool = False) -> ExportResult:
    """tta: a defectgate.tta preset naming the views the bundle is judged with (none, hflip, hvflip,
    hvflip-ms); the thresholds are calibrated with them on, the parity check compares the bare network.
    view_batch: the model's static batch is the number of views, so that every backend runs a frame's
    views as one inference (False: batch 1, one inference per view).
    part_score: fit a part score on the calibration split and declare it (sidecar key part_score)."""
    from defectgate.tta import preset

    views = preset(tta)  # refuses an unknown name before any work
    if part_score and not (data and calibrate):
        raise ConfigError("--part-score is fitted on --data's val split and calibrated to --target-escape: "
                          "give --data and drop --no-calibrate")
    tta_spec, batch = views.model_dump(), views.views if view_batch else 1
    weights, out = Path(weights), Path(out)
    if not weights.is_file():
        raise BundleError(f"{weights}: weights file not found; train first with 'defectgate train'")
    yolo, torch_model, names, train_args, arch = load_torch_model(weights, head)
    if data:
        spec = load_data_yaml(data)
        if spec.names != names:
            raise BundleError(f"{weights}: model classes {names} differ from {spec.yaml_path} classes {spec.names}")
    imgsz = int(imgsz or train_args.get("imgsz") or 640)
    precision = "fp16" if half else "fp32"
    if out.exists() and not (out / "model.json").is_file() and any(out.iterdir()):
        raise BundleError(f"{out}: exists and is not a bundle folder; choose another --out")
    with staged_dir(out) as tmp:
        shutil.copyfile(weights, tmp / "model.pt")
        U = ultralytics()
        exported = Path(U.YOLO(str(tmp / "model.pt")).export(format="onnx", imgsz=imgsz, opset=opset, simplify=True,
                                                             dynamic=False, half=False, device="cpu", verbose=False,
                                                             batch=batch,
                                                             # nms=False exports the NMS-free head, None the other
                                                             nms=False if getattr(torch_model, "end2end", False) else None))
        (tmp / "model.pt").unlink()
        onnx_path = tmp / "model.onnx"
        if exported != onnx_path:
            exported.replace(onnx_path)
        if half:
            to_fp16(onnx_path)
        sidecar = build_sidecar(onnx_path, names, imgsz, arch, precision, _training_facts(weights, data, train_args),
                                head_strides(torch_model), tta_spec)
        sidecar["input"]["batch"] = batch
        write_json_atomic(tmp / "model.json", sidecar)
        images = sample_images(data, split, parity_images, imgsz)
        # parity_check loads the bundle with the runtime's reader first: an impossible sidecar (tta on an
        # end2end head, say) fails there with the runtime's message, before anything is measured
        parity = parity_check(tmp, torch_model, images, PARITY[precision])
        log.info("parity: %d detections compared on %d images, max score diff %.4f, max box diff %.3f px",
                 parity["detections_compared"], parity["images"], parity["max_score_diff"], parity["max_box_px"])
        sidecar["engine_info"] = {"parity": parity}
        evaluation = None
        if data and calibrate:
            from .evaluate import evaluate_model

            spec = load_data_yaml(data)
            use = split if split in spec.splits else "train"
            evaluation = evaluate_model(tmp, data, use, target_escape=target_escape, backend="onnxruntime",
                                        part_score=part_score)
            sidecar["class_thresholds"] = evaluation["thresholds"]
            sidecar["part_score"] = evaluation["part_score"]
            sidecar["metrics"] = metrics_for_sidecar(evaluation)
        write_json_atomic(tmp / "model.json", sidecar)
    return ExportResult(out, sidecar, parity, evaluation)


def metrics_for_sidecar(ev: dict) -> dict:
    keep = ("split", "images", "map50", "map50_95", "escape_rate", "overkill_rate", "target_escape_rate",
            "parts", "decision", "any_box", "default_threshold")
    m = {k: ev[k] for k in keep if k in ev}
    m["per_class_ap50"] = {c: v["ap50"] for c, v in ev.get("per_class", {}).items()}
    return m


def to_fp16(onnx_path: Path) -> None:
    """Convert weights and activations to float16, keeping float32 input/output so the runtime's
    preprocessing and decode are unchanged."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(onnx_path)), keep_io_types=True)
    tmp = onnx_path.with_suffix(".fp16.tmp")
    onnx.save(model, str(tmp))
    tmp.replace(onnx_path)
