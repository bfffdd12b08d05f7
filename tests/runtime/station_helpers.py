"""Helpers for the station tests: the tiny YOLO11n bundle (random weights, BatchNorm statistics
re-estimated so outputs vary with the image) at 64 px, and station configs that run it on the
synthetic conveyor. A module of its own name, not conftest: several test folders have a conftest."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path


from defectgate.bundle import InputSpec, OutputSpec, Sidecar, sha256_file, write_sidecar
from defectgate.config import load_config
from tinyyolo import export_tiny_yolo

IMGSZ = 64
CLASSES = ["scratch", "dent", "crack", "stain"]


def _export_tiny_yolo(out_dir: Path, batch: int = 1) -> Path:
    return export_tiny_yolo(out_dir, CLASSES, IMGSZ, bn_batches=(3, 2), batch=batch)


def make_bundle(onnx: Path, root: Path, version: str = "v0001", conf: float = 0.25) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    dst = root / "model.onnx"
    shutil.copyfile(onnx, dst)
    anchors = sum((IMGSZ // s) ** 2 for s in (8, 16, 32))
    write_sidecar(root, Sidecar(
        model_file="model.onnx", sha256=sha256_file(dst), architecture="yolo11n", classes=CLASSES,
        input=InputSpec(imgsz=(IMGSZ, IMGSZ)), conf_threshold=conf, version=version,
        output=OutputSpec(layout="yolo_raw", shape=[1, 4 + len(CLASSES), anchors]),
    ))
    return root


def station_cfg(bundle: Path, run_dir: Path, uri: str, *overrides: str):
    """A station on ONNX Runtime (1 thread: tests share 2 cores) with a simulated ejector and alarm."""
    return load_config(None, [
        f"model.bundle={bundle}", "model.backend=onnxruntime", "model.threads=1", f"station.run_dir={run_dir}",
        f"source.uri={uri}", "conveyor.belt_speed_mm_s=600", "conveyor.camera_to_ejector_mm=400",
        "pipeline.watchdog_s=0.5", *overrides,
    ])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
