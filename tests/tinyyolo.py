"""Test helpers shared by the backend and station tests: a tiny YOLO11n exported to ONNX (random
weights, seeded; parity between engines and station plumbing do not need trained weights), wrapped
in a real bundle."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from defectgate.bundle import InputSpec, OutputSpec, Sidecar, sha256_file, write_sidecar

IMGSZ = 64
CLASSES = ["scratch", "dent", "stain"]


def export_tiny_yolo(out_dir: Path, classes: list[str] = CLASSES, imgsz: int = IMGSZ,
                     bn_batches: tuple[int, int] = (4, 4), batch: int = 1) -> Path:
    """YOLO11n from its YAML with len(classes) classes, exported to ONNX at `imgsz` (no downloads).
    `bn_batches` = (how many, batch size) of random batches that re-estimate the BatchNorm statistics;
    the weights depend on them only (seeded), so exports at another static `batch` are the same network."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("MPLBACKEND", "Agg")
    torch = pytest.importorskip("torch", reason="exporting the test model needs the [train] extra")
    ultralytics = pytest.importorskip("ultralytics", reason="exporting the test model needs the [train] extra")
    cfg = Path(ultralytics.__file__).parent / "cfg" / "models" / "11" / "yolo11.yaml"
    text = cfg.read_text().replace("nc: 80", f"nc: {len(classes)}")
    yaml_path = out_dir / "yolo11n.yaml"  # the "n" in the name selects the nano scale
    yaml_path.write_text(text)
    torch.manual_seed(0)
    model = ultralytics.YOLO(str(yaml_path))
    # Untrained, every layer shrinks its input and the outputs come out flat (equal boxes, scores
    # ~0.004). Re-estimate the BatchNorm statistics on a few random batches so activations keep unit
    # scale: outputs then vary with the image and decoded detections exist to compare between engines.
    net = model.model
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the batches below
    net.train()
    with torch.no_grad():
        for _ in range(bn_batches[0]):
            net(torch.rand(bn_batches[1], 3, imgsz, imgsz))
    net.eval()
    with contextlib.chdir(out_dir):  # the export lands next to the YAML's name, i.e. in the cwd
        onnx = model.export(format="onnx", imgsz=imgsz, opset=17, simplify=False, dynamic=False, verbose=False,
                            batch=batch)
    return (out_dir / onnx).resolve()


def make_onnx_bundle(onnx: Path, root: Path, classes: list[str] = CLASSES) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    dst = root / "model.onnx"
    dst.write_bytes(onnx.read_bytes())
    anchors = sum((IMGSZ // s) ** 2 for s in (8, 16, 32))
    sidecar = Sidecar(
        model_file="model.onnx", sha256=sha256_file(dst), architecture="yolo11n", classes=classes,
        input=InputSpec(imgsz=(IMGSZ, IMGSZ)),
        output=OutputSpec(layout="yolo_raw", shape=[1, 4 + len(classes), anchors]),
    )
    write_sidecar(root, sidecar)
    return root


def part_images(folder: Path, n: int, hw: tuple[int, int] = (96, 128), seed: int = 0) -> Path:
    """Gray parts on a dark belt with a few dark scratches: realistic value ranges for calibration."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    h, w = hw
    for i in range(n):
        img = np.full((h, w, 3), 40, np.uint8)
        cv2.rectangle(img, (w // 8, h // 8), (w - w // 8, h - h // 8), (150, 150, 160), -1)
        for _ in range(int(rng.integers(0, 3))):
            x, y = int(rng.integers(w // 8, w - w // 4)), int(rng.integers(h // 8, h - h // 4))
            cv2.line(img, (x, y), (x + int(rng.integers(5, 20)), y + int(rng.integers(-5, 5))), (30, 30, 30), 2)
        img = cv2.add(img, rng.integers(0, 20, img.shape, dtype=np.uint8))
        cv2.imwrite(str(folder / f"part_{i:03d}.png"), img)
    return folder


def make_tiny_conv_bundle(root: Path, imgsz: int = 32, seed: int = 0) -> Path:
    """A three-convolution ONNX model with a yolo_raw-shaped output (1, 4 + nc, A): few enough layers
    that NNCF's accuracy-aware search (one recompile per layer group) finishes in seconds."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nc = len(CLASSES)
    chans = [3, 8, 16, 4 + nc]
    nodes, inits = [], []
    prev = "images"
    for i in range(3):
        w = rng.normal(0, 0.5, (chans[i + 1], chans[i], 3, 3)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(np.zeros(chans[i + 1], np.float32), f"b{i}")]
        out = f"c{i}"
        stride = 2 if i < 2 else 1
        nodes.append(helper.make_node("Conv", [prev, f"w{i}", f"b{i}"], [out], pads=[1, 1, 1, 1], strides=[stride, stride]))
        prev = out
        if i < 2:
            nodes.append(helper.make_node("Relu", [prev], [f"r{i}"]))
            prev = f"r{i}"
    anchors = (imgsz // 4) ** 2
    inits.append(numpy_helper.from_array(np.array([1, 4 + nc, anchors], np.int64), "shape"))
    nodes.append(helper.make_node("Reshape", [prev, "shape"], ["flat"]))
    nodes.append(helper.make_node("Sigmoid", ["flat"], ["output0"]))
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, imgsz, imgsz])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 4 + nc, anchors])], inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    root.mkdir(parents=True, exist_ok=True)
    onnx.save(model, root / "model.onnx")
    sidecar = Sidecar(
        model_file="model.onnx", sha256=sha256_file(root / "model.onnx"), architecture="tiny-conv", classes=CLASSES,
        input=InputSpec(imgsz=(imgsz, imgsz)), output=OutputSpec(layout="yolo_raw", shape=[1, 4 + nc, anchors]),
    )
    write_sidecar(root, sidecar)
    return root
