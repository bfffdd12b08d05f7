"""Session fixtures for the station tests: one tiny YOLO11n (random weights, BatchNorm statistics
re-estimated so outputs vary with the image) exported once to ONNX at 64 px and wrapped in a real
bundle; station configs that run it on the synthetic conveyor."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
from pathlib import Path

import pytest

from defectgate.bundle import InputSpec, OutputSpec, Sidecar, sha256_file, write_sidecar
from defectgate.config import load_config

IMGSZ = 64
CLASSES = ["scratch", "dent", "crack", "stain"]


def _export_tiny_yolo(out_dir: Path) -> Path:
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("MPLBACKEND", "Agg")
    torch = pytest.importorskip("torch", reason="exporting the test model needs the [train] extra")
    ultralytics = pytest.importorskip("ultralytics", reason="exporting the test model needs the [train] extra")
    cfg = Path(ultralytics.__file__).parent / "cfg" / "models" / "11" / "yolo11.yaml"
    yaml_path = out_dir / "yolo11n.yaml"  # the "n" selects the nano scale
    yaml_path.write_text(cfg.read_text().replace("nc: 80", f"nc: {len(CLASSES)}"))
    torch.manual_seed(0)
    model = ultralytics.YOLO(str(yaml_path))
    net = model.model
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.rand(2, 3, IMGSZ, IMGSZ))
    net.eval()
    with contextlib.chdir(out_dir):
        onnx = model.export(format="onnx", imgsz=IMGSZ, opset=17, simplify=False, dynamic=False, verbose=False)
    return (out_dir / onnx).resolve()


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


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory) -> Path:
    return _export_tiny_yolo(tmp_path_factory.mktemp("tiny_yolo"))


@pytest.fixture(scope="session")
def tiny_bundle(tiny_onnx, tmp_path_factory) -> Path:
    return make_bundle(tiny_onnx, tmp_path_factory.mktemp("bundle") / "tiny")


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
