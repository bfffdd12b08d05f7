"""Backend parity: the same images through a reference (ONNX Runtime on the CPU by default) and
through each candidate backend or derived bundle (OpenVINO, FP16, INT8, a TensorRT engine), every one
through the station's own Detector (preprocessing, views, decode). Reports the largest box and score differences of
matched detections, detections that have no partner, and mAP50 on a split for each, and says whether
each candidate's mAP50 stays within the allowed drop (issue targets: FP16 0.005, INT8 0.02)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from defectgate.detector import Detector
from defectgate.errors import ConfigError
from defectgate.preprocess import LetterboxInfo

from .export import ParityTolerance, compare_detections


@dataclass(frozen=True)
class Target:
    """A bundle folder and the backend that runs it, written `PATH[:BACKEND]` on the command line."""

    bundle: Path
    backend: str = "onnxruntime"

    @classmethod
    def parse(cls, text: str) -> "Target":
        path, _, backend = text.partition(":")
        if not path:
            raise ConfigError(f"'{text}': expected BUNDLE[:BACKEND], e.g. runs/demo/bundle:openvino")
        return cls(Path(path), backend or "onnxruntime")

    def __str__(self) -> str:
        return f"{self.bundle}:{self.backend}"


def _run(detector: Detector, image: np.ndarray) -> tuple[list[np.ndarray], LetterboxInfo]:
    batch, info = detector.prepare(image)
    return detector.infer(batch), info


def compare_backends(reference: Target, candidates: list[Target], images: list[np.ndarray],
                     tol: ParityTolerance) -> list[dict]:
    """Per candidate: matched detections both ways, unmatched ones, max box (px) and score differences.
    Every image runs once through each Detector; its outputs are decoded at `tol.conf` on one side and
    at the loose floor on the other, both ways round."""
    loose = max(tol.conf - tol.margin, 0.0)
    ref = Detector.open(reference.bundle, reference.backend, conf_floor=loose)
    rows = []
    try:
        for cand in candidates:
            det = Detector.open(cand.bundle, cand.backend, conf_floor=loose)
            try:
                if det.classes != ref.classes:
                    raise ConfigError(f"{cand}: classes {det.classes} differ from the reference's {ref.classes}")
                matched, problems, max_box, max_score = 0, [], 0.0, 0.0
                for k, img in enumerate(images):
                    ours, theirs = (ref, *_run(ref, img)), (det, *_run(det, img))
                    for (da, oa, ia), (db, ob, ib) in ((ours, theirs), (theirs, ours)):
                        m, p, bx, sc = compare_detections(da.decode(oa, ia, conf=tol.conf), db.decode(ob, ib), tol)
                        matched += m
                        problems += [f"image {k}: {q}" for q in p]
                        max_box, max_score = max(max_box, bx), max(max_score, sc)
            finally:
                det.close()
            rows.append({"candidate": str(cand), "runs_on": det.backend.name, "precision": det.sidecar.precision,
                         "images": len(images), "detections_matched": matched, "mismatches": len(problems),
                         "first_mismatch": problems[0] if problems else None,
                         "max_box_px": round(max_box, 3), "max_score_diff": round(max_score, 4)})
    finally:
        ref.close()
    return rows
