"""Backend parity: the same images through a reference (ONNX Runtime on the CPU by default) and
through each candidate backend or derived bundle (OpenVINO, FP16, INT8, a TensorRT engine), every one
through the station's own preprocessing and decode. Reports the largest box and score differences of
matched detections, detections that have no partner, and mAP50 on a split for each, and says whether
each candidate's mAP50 stays within the allowed drop (issue targets: FP16 0.005, INT8 0.02)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from defectgate.backends import load_backend
from defectgate.bundle import load_bundle
from defectgate.errors import ConfigError
from defectgate.postprocess import decode
from defectgate.preprocess import Preprocessor

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


def _detector(target: Target):
    bundle = load_bundle(target.bundle)
    backend = load_backend(bundle, target.backend)
    pre = Preprocessor(bundle.sidecar.input)
    side = bundle.sidecar

    def detect(image: np.ndarray, conf: float):
        batch, info = pre(image)
        return decode(backend.infer(batch)[0], side.output, len(side.classes), info, conf, side.iou_threshold)

    return bundle, backend, detect


def compare_backends(reference: Target, candidates: list[Target], images: list[np.ndarray],
                     tol: ParityTolerance) -> list[dict]:
    """Per candidate: matched detections both ways, unmatched ones, max box (px) and score differences."""
    ref_bundle, ref_backend, ref = _detector(reference)
    rows = []
    try:
        for cand in candidates:
            bundle, backend, det = _detector(cand)
            if bundle.classes != ref_bundle.classes:
                raise ConfigError(f"{cand}: classes {bundle.classes} differ from the reference's {ref_bundle.classes}")
            matched, problems, max_box, max_score = 0, [], 0.0, 0.0
            try:
                for k, img in enumerate(images):
                    loose = max(tol.conf - tol.margin, 0.0)
                    for a, b in ((ref(img, tol.conf), det(img, loose)), (det(img, tol.conf), ref(img, loose))):
                        m, p, bx, sc = compare_detections(a, b, tol)
                        matched += m
                        problems += [f"image {k}: {q}" for q in p]
                        max_box, max_score = max(max_box, bx), max(max_score, sc)
            finally:
                backend.close()
            rows.append({"candidate": str(cand), "runs_on": backend.name, "precision": bundle.sidecar.precision,
                         "images": len(images), "detections_matched": matched, "mismatches": len(problems),
                         "first_mismatch": problems[0] if problems else None,
                         "max_box_px": round(max_box, 3), "max_score_diff": round(max_score, 4)})
    finally:
        ref_backend.close()
    return rows
