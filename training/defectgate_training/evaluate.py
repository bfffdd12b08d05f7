"""Evaluate a model the way the line will use it.

Models: an ONNX bundle (folder or model.json) or a TensorRT/OpenVINO bundle runs through the
runtime's one path, a `defectgate.detector.Detector` (letterbox, backend, the sidecar's test-time
views, decode at its max_det and IoU), so what is measured is what runs on the line; a `.pt` runs its
PyTorch network as a Backend behind the same Detector (torch_backend.py), with `--tta` as its views.

Numbers:
- box level: mAP50 and mAP50-95 (COCO-style 101-point interpolated AP, greedy matching by score),
  per-class AP50, AP50-95 and precision/recall at the operating threshold.
- part level: an image is a part, NG when it has any ground-truth box. A part is rejected when any
  detection passes its class threshold. escape rate = NG parts not rejected / NG parts; overkill
  rate = OK parts rejected / OK parts (null when the split has no OK parts), each with its 95 %
  Wilson interval: on a few hundred parts a rate is uncertain by several points; and the escape
  rate's one-sided 95 % upper bound (Clopper-Pearson, evidence.py): "escape <= X at 95 % confidence".
- calibration: per-class thresholds so that the expected escape rate on new parts stays within
  `target_escape` (any class firing rejects a part; the calibration split's NG parts may escape one
  fewer than the target's share of them, usually: evidence.escapes_allowed says why), each as high
  as that allows to keep overkill low, and
  each class still catching at least half of its own defects (see `calibrate`); fitted on
  `calib_data` when given (`defectgate data halves`: other parts than those reported on), else on the
  reported split itself, which then meets the target by construction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from defectgate.bundle import load_bundle
from defectgate.detector import Detector
from defectgate.errors import BundleError
from defectgate.images import read_image
from defectgate.postprocess import pairwise_iou
from defectgate.types import Detections

from .datayaml import label_path_for, load_data_yaml, read_labels, split_images
from .evidence import clopper_pearson_upper, escapes_allowed, finest_budget

log = logging.getLogger(__name__)

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
EVAL_CONF = 0.001  # keep low-score detections for the PR curve; operating thresholds apply later
MIN_THRESHOLD, MAX_THRESHOLD = 0.01, 0.95
MAX_CLASS_BUDGET = 0.5  # calibrate: a class alone still catches at least half of its own defects


@dataclass
class ImageResult:
    path: str
    gt_xyxy: np.ndarray
    gt_cls: np.ndarray
    det: Detections
    hw: tuple[int, int] = (0, 0)  # the image's height, width: part-score features read box areas against it


# ---------------------------------------------------------------- the model
# a bundle runs the head it was exported with: the sidecar's output layout names it
_LAYOUT_OF_HEAD = {"nms-free": "end2end", "nms": "yolo_raw"}


def _check_head(root: Path, layout: str, head: str) -> None:
    """Refuse a --head the bundle was not exported with, rather than measure another head than asked."""
    want = _LAYOUT_OF_HEAD.get(head)
    if want is not None and want != layout:
        raise BundleError(f"{root}: exported with output layout '{layout}', not the '{head}' head; "
                          f"re-export with `defectgate export --head {head}` or drop --head")


def _check_tta(root: Path, declared, tta: str | None) -> None:
    """Refuse a --tta other than the one the bundle's thresholds were calibrated with."""
    from defectgate.tta import preset

    if tta is not None and preset(tta) != declared:
        raise BundleError(f"{root}: exported with tta {declared.model_dump()}, not '{tta}'; re-export with "
                          f"`defectgate export --tta {tta}` or drop --tta")


def open_detector(model: str | Path, backend: str = "auto", imgsz: int | None = None, head: str = "auto",
                  tta: str | None = None) -> tuple[Detector, str]:
    """The Detector that judges `model`, and what it runs on (for the report). A bundle (folder,
    model.json or its model file) runs on `backend` with the views its sidecar declares; a `.pt` runs
    its PyTorch network behind the same Detector (torch_backend), with `head` (torch_backend.HEADS)
    and `tta` (a defectgate.tta.PRESETS name) as a bundle exported with them would."""
    p = Path(model)
    if p.suffix == ".pt":
        if not p.is_file():
            raise BundleError(f"{p}: weights file not found")
        from .torch_backend import torch_detector

        detector = torch_detector(p, imgsz, head, tta, conf_floor=EVAL_CONF)
        size = detector.sidecar.input.imgsz[0]
        return detector, f"pytorch {p} ({size} px{'' if tta in (None, 'none') else f', tta {tta}'})"
    if p.suffix in (".onnx", ".engine", ".xml") and (p.parent / "model.json").is_file():
        p = p.parent
    elif not (p.is_dir() or p.name == "model.json"):
        raise BundleError(f"{p}: not a .pt checkpoint or a bundle folder with model.json")
    bundle = load_bundle(p)
    _check_head(bundle.root, bundle.sidecar.output.layout, head)
    _check_tta(bundle.root, bundle.sidecar.tta, tta)
    detector = Detector(bundle, backend_name=backend, conf_floor=EVAL_CONF)
    return detector, f"bundle {bundle.root} ({detector.backend.name}, {bundle.sidecar.precision})"


# ---------------------------------------------------------------- running
def collect(detector, data: str | Path, split: str, limit: int | None = None) -> tuple[list[ImageResult], list[str]]:
    """Every image of `data`'s `split` (the first `limit`) through `detector`, with its ground truth."""
    spec = load_data_yaml(data)
    if spec.names != list(detector.classes):
        raise BundleError(f"model classes {list(detector.classes)} differ from {spec.yaml_path} classes {spec.names}; "
                          "evaluate a model on the dataset it was trained for")
    return collect_images(detector.detect, split_images(spec, split)[:limit], spec.names), spec.names


def collect_images(detect: Callable[[np.ndarray], Detections], images: Sequence[Path],
                   names: list[str]) -> list[ImageResult]:
    """`detect` (a Detector's) on each image, beside the boxes of its YOLO label file."""
    results = []
    for k, path in enumerate(images):
        img = read_image(path)
        h, w = img.shape[:2]
        gt_xyxy, gt_cls = read_labels(label_path_for(Path(path)), w, h, len(names))
        results.append(ImageResult(str(path), gt_xyxy, gt_cls, detect(img), (h, w)))
        if (k + 1) % 100 == 0:
            log.info("evaluated %d/%d images", k + 1, len(images))
    return results


# ---------------------------------------------------------------- box metrics
def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    return pairwise_iou(a, b)


def match_image(r: ImageResult) -> np.ndarray:
    """(N_det, 10) bool: detection i is a true positive at IoU threshold t (greedy, by score)."""
    det = r.det
    tp = np.zeros((len(det), len(IOU_THRESHOLDS)), bool)
    if len(det) == 0 or len(r.gt_cls) == 0:
        return tp
    iou = box_iou(det.xyxy, r.gt_xyxy)
    iou[det.class_id[:, None] != r.gt_cls[None, :]] = 0
    order = np.argsort(-det.confidence, kind="stable")
    for t, thr in enumerate(IOU_THRESHOLDS):
        used = np.zeros(len(r.gt_cls), bool)
        for i in order:
            cand = np.where(~used & (iou[i] >= thr))[0]
            if len(cand):
                j = cand[iou[i, cand].argmax()]
                used[j] = True
                tp[i, t] = True
    return tp


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """101-point interpolated AP over the precision envelope (COCO, as ultralytics)."""
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([1.0], precision, [0.0]))
    mpre = np.flip(np.maximum.accumulate(np.flip(mpre)))
    x = np.linspace(0, 1, 101)
    return float(np.trapezoid(np.interp(x, mrec, mpre), x)) if hasattr(np, "trapezoid") else float(np.trapz(np.interp(x, mrec, mpre), x))


def box_metrics(results: list[ImageResult], names: list[str], thresholds: dict[str, float]) -> tuple[dict, dict]:
    """Returns (summary, pr_curves) where pr_curves[class] = (recall, precision, scores) at IoU 0.5."""
    tps, confs, clss = [], [], []
    for r in results:
        tps.append(match_image(r))
        confs.append(r.det.confidence)
        clss.append(r.det.class_id)
    tp = np.concatenate(tps) if tps else np.zeros((0, 10), bool)
    conf = np.concatenate(confs) if confs else np.zeros(0)
    cls = np.concatenate(clss) if clss else np.zeros(0, np.int64)
    gt_counts = np.bincount(np.concatenate([r.gt_cls for r in results] or [np.zeros(0, np.int64)]), minlength=len(names))
    per_class, curves, ap50s, aps = {}, {}, [], []
    for c, name in enumerate(names):
        sel = cls == c
        order = np.argsort(-conf[sel], kind="stable")
        tpc = tp[sel][order]
        scores = conf[sel][order]
        n_gt = int(gt_counts[c])
        thr = thresholds.get(name, 0.25)
        if n_gt == 0:
            per_class[name] = {"gt_boxes": 0, "ap50": None, "ap50_95": None, "precision": None, "recall": None,
                               "threshold": thr}
            continue
        ctp = np.cumsum(tpc, 0)
        cfp = np.cumsum(~tpc, 0)
        recall = ctp / n_gt
        precision = ctp / np.maximum(ctp + cfp, 1)
        ap = [average_precision(recall[:, t], precision[:, t]) if len(tpc) else 0.0 for t in range(10)]
        kept = scores >= thr
        k = int(kept.sum())
        p_op = float(ctp[k - 1, 0] / k) if k else 0.0
        r_op = float(ctp[k - 1, 0] / n_gt) if k else 0.0
        per_class[name] = {"gt_boxes": n_gt, "ap50": round(ap[0], 4), "ap50_95": round(float(np.mean(ap)), 4),
                           "precision": round(p_op, 4), "recall": round(r_op, 4), "threshold": round(thr, 4)}
        curves[name] = (recall[:, 0] if len(tpc) else np.zeros(0), precision[:, 0] if len(tpc) else np.zeros(0), scores)
        ap50s.append(ap[0])
        aps.append(float(np.mean(ap)))
    summary = {"map50": round(float(np.mean(ap50s)), 4) if ap50s else 0.0,
               "map50_95": round(float(np.mean(aps)), 4) if aps else 0.0}
    return {**summary, "per_class": per_class}, curves


# ---------------------------------------------------------------- part level
def part_scores(results: list[ImageResult], nc: int) -> np.ndarray:
    """(parts, nc): the highest detection score of each class in each part (0 when none)."""
    out = np.zeros((len(results), nc), np.float32)
    for i, r in enumerate(results):
        if len(r.det):
            np.maximum.at(out[i], r.det.class_id, r.det.confidence)
    return out


def part_rates(scores: np.ndarray, ng: np.ndarray, thresholds: np.ndarray) -> dict:
    """The rates when a part is rejected for any class at or above its threshold ("any box")."""
    return rates_of((scores >= thresholds[None, :]).any(1), ng)


def rates_of(rejected: np.ndarray, ng: np.ndarray) -> dict:
    """Escape and overkill counts, rates and intervals of one rejected-or-not per part."""
    n_ng, n_ok = int(ng.sum()), int((~ng).sum())
    escapes = int((ng & ~rejected).sum())
    overkills = int((~ng & rejected).sum())
    return {"parts": len(ng), "ng_parts": n_ng, "ok_parts": n_ok, "escapes": escapes, "overkills": overkills,
            "escape_rate": round(escapes / n_ng, 4) if n_ng else None,
            "overkill_rate": round(overkills / n_ok, 4) if n_ok else None,
            "escape_rate_ci95": wilson_interval(escapes, n_ng), "overkill_rate_ci95": wilson_interval(overkills, n_ok),
            # what a plant can be sure of: "escape <= X at 95 % confidence" (evidence.py, Clopper-Pearson)
            "escape_rate_upper95": round(clopper_pearson_upper(escapes, n_ng), 4) if n_ng else None}


def wilson_interval(k: int, n: int, z: float = 1.96) -> list[float] | None:
    """95 % Wilson score interval of a rate k/n. Why: a QA engineer reads "0 of 179 escaped" as 0 %,
    but with 179 parts the true escape rate may still be up to ~2 %; the interval says how far to trust it
    (Wilson rather than k/n +- normal error: it stays inside [0, 1] and is honest at k = 0)."""
    if not n:
        return None
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(float(max(0.0, centre - half)), 4), round(float(min(1.0, centre + half)), 4)]


def calibrate(results: list[ImageResult], names: list[str], target_escape: float, default: float) -> dict[str, float]:
    """Per-class thresholds that keep the part-level escape rate on new parts within `target_escape`.

    The split's NG parts may escape at most evidence.escapes_allowed(n, target) times (one fewer than
    the target's share of them, usually: the count that holds the budget on parts the thresholds were
    not set on). Per class c, at a per-class budget tau: among NG parts whose ground truth holds class c,
    take the class-c detection score of each (0 if none) and choose the highest threshold that lets
    escapes_allowed(n_c, tau) of them through (clipped to MIN_THRESHOLD..MAX_THRESHOLD; classes absent
    from the split keep `default`). A part is rejected when any class fires, so tau = target_escape
    over-delivers (a scratch is often also caught as a crack) and costs needless overkill. tau is
    therefore raised from 0 while the part-level escapes stay within the allowance, but never above
    MAX_CLASS_BUDGET: each class must still catch at least half of its own defects by itself, so that
    no class is calibrated blind on a small validation split."""
    from .partscore_fit import escape_threshold

    nc = len(names)
    scores = part_scores(results, nc)
    ng = np.array([len(r.gt_cls) > 0 for r in results])
    holds = [np.array([bool((r.gt_cls == c).any()) for r in results]) for c in range(nc)]
    allowed_parts = escapes_allowed(int(ng.sum()), target_escape)

    def per_class(tau: float) -> dict[str, float]:
        out = {}
        for c, name in enumerate(names):
            if not holds[c].any():
                out[name] = round(default, 4)
                continue
            t = escape_threshold(scores[holds[c], c], tau)
            out[name] = round(float(np.clip(t, MIN_THRESHOLD, MAX_THRESHOLD)), 4)
        return out

    best = per_class(0.0)  # the strictest: kept even when it lets more through than allowed (too few NG parts)
    for tau in np.linspace(0.0, max(target_escape, MAX_CLASS_BUDGET), 81)[1:]:
        cand = per_class(float(tau))
        if part_rates(scores, ng, np.array([cand[n] for n in names]))["escapes"] > allowed_parts:
            break  # escape only grows with tau
        best = cand
    return best


def threshold_sweep(scores: np.ndarray, ng: np.ndarray, steps: int = 99) -> dict[str, list[float]]:
    ts = np.linspace(0.01, 0.99, steps)
    esc, ovk = [], []
    for t in ts:
        r = part_rates(scores, ng, np.full(scores.shape[1], t))
        esc.append(r["escape_rate"])
        ovk.append(r["overkill_rate"])
    return {"threshold": ts.round(3).tolist(), "escape_rate": esc, "overkill_rate": ovk}


def confusion(results: list[ImageResult], nc: int, thresholds: np.ndarray, iou: float = 0.5) -> np.ndarray:
    """(nc+1, nc+1) counts: rows predicted class (last = background/missed), columns true class
    (last = background/false alarm), at the operating thresholds."""
    m = np.zeros((nc + 1, nc + 1), np.int64)
    for r in results:
        det = r.det[r.det.confidence >= thresholds[r.det.class_id]] if len(r.det) else r.det
        ious = box_iou(det.xyxy, r.gt_xyxy)
        used_gt = np.zeros(len(r.gt_cls), bool)
        used_det = np.zeros(len(det), bool)
        for i in np.argsort(-det.confidence, kind="stable"):
            if ious.shape[1] == 0:
                break
            cand = np.where(~used_gt & (ious[i] >= iou))[0]
            if len(cand):
                j = cand[ious[i, cand].argmax()]
                used_gt[j] = used_det[i] = True
                m[det.class_id[i], r.gt_cls[j]] += 1
        for j in np.where(~used_gt)[0]:
            m[nc, r.gt_cls[j]] += 1
        for i in np.where(~used_det)[0]:
            m[det.class_id[i], nc] += 1
    return m


# ---------------------------------------------------------------- top level
def evaluate_model(model: str | Path, data: str | Path, split: str = "val", target_escape: float | None = 0.02,
                   backend: str = "auto", plots_dir: str | Path | None = None, imgsz: int | None = None,
                   limit: int | None = None, head: str = "auto", tta: str | None = None,
                   calib_data: str | Path | None = None, calib_split: str = "val", part_score: bool = False) -> dict:
    """Evaluate `model` on `data`'s `split`. With `target_escape`, per-class thresholds are calibrated
    to it and the part-level rates are reported at them: on `calib_data`'s `calib_split` when given
    (thresholds fitted on other parts than those reported on: what the line will see), else on this
    split itself (which meets the target by construction). Without, at the model's own thresholds.
    The part-level decision is the bundle's part score when it declares one (partscore_fit), or one
    fitted on the calibration parts with `part_score`; the per-class "any box" rates stay in `any_box`."""
    detector, runs_on = open_detector(model, backend, imgsz, head, tta)
    try:
        results, names = collect(detector, data, split, limit)
        calib_results = results
        if calib_data is not None and target_escape is not None:
            calib_results, calib_names = collect(detector, calib_data, calib_split, limit)
            if calib_names != names:
                raise BundleError(f"{calib_data}: classes {calib_names} differ from {data}'s {names}")
        own = {c: detector.sidecar.threshold_for(c) for c in detector.classes}
        declared = detector.sidecar.part_score
    finally:
        detector.close()
    nc = len(names)
    ng = np.array([len(r.gt_cls) > 0 for r in results])
    scores = part_scores(results, nc)
    default = float(np.median(list(own.values()))) if own else 0.25
    thresholds = calibrate(calib_results, names, target_escape, default) if target_escape is not None else own
    calib_ng = sum(len(r.gt_cls) > 0 for r in calib_results)
    if target_escape is not None and target_escape < finest_budget(calib_ng):
        log.warning("%d NG calibration parts cannot hold an escape budget of %g on new parts (the finest they "
                    "can is %.4f); calibrating as strictly as they allow", calib_ng, target_escape,
                    finest_budget(calib_ng))
    t_vec = np.array([thresholds[n] for n in names], np.float32)
    box, curves = box_metrics(results, names, thresholds)
    at_own = part_rates(scores, ng, np.array([own[n] for n in names], np.float32))
    at_op = part_rates(scores, ng, t_vec)
    from .partscore_fit import at_matched_escape, part_score_decision

    calib_label = f"{calib_data}:{calib_split}" if calib_data is not None else f"{data}:{split}"
    calibrated_on = None if target_escape is None else (
        calib_label if calib_data is not None else f"{calib_label} (the reported split itself)")
    fitted_on = "the bundle" if target_escape is None else calib_label  # what a sidecar records
    by_score = part_score_decision(results, calib_results, names, target_escape, declared, part_score, fitted_on)
    decided = at_op if by_score is None else by_score["parts"]
    rejected = (scores >= t_vec[None, :]).any(1) if by_score is None else by_score["rejected"]
    out = {
        "model": str(model), "runs_on": runs_on, "data": str(data), "split": split, "images": len(results),
        "map50": box["map50"], "map50_95": box["map50_95"],
        "decision": "any_box" if by_score is None else "part_score",
        "escape_rate": decided["escape_rate"], "overkill_rate": decided["overkill_rate"],
        "thresholds": thresholds, "target_escape_rate": target_escape, "calibrated_on": calibrated_on,
        # how many calibration NG parts the thresholds let through, so that new parts stay within the target
        "calibration_escapes_allowed": None if target_escape is None else {
            "ng_parts": calib_ng, "escapes": escapes_allowed(calib_ng, target_escape)},
        "parts": decided, "any_box": at_op, "default_threshold": {"thresholds": own, **at_own},
        "part_score": None if by_score is None else by_score["spec"],
        "per_class": box["per_class"],
        # both decisions at the same escape, read off this split's curves (any box: one threshold for all)
        "matched_escape": None if by_score is None else at_matched_escape(
            {"any_box": scores.max(1, initial=0.0), "part_score": by_score["values"]}, ng,
            [by_score["parts"]["escapes"], at_op["escapes"]]),
        # the parts to look at: what the line would have thrown away and what it would have let through
        "overkill_images": [r.path for r, x, g in zip(results, rejected, ng) if x and not g],
        "escape_images": [r.path for r, x, g in zip(results, rejected, ng) if g and not x],
    }
    if plots_dir:
        from .evaluate_plots import write_plots

        out["plots"] = write_plots(Path(plots_dir), names, curves, threshold_sweep(scores, ng),
                                   confusion(results, nc, t_vec), thresholds, at_op,
                                   None if by_score is None else (by_score["sweep"], by_score["parts"]))
    return out
