"""Test data for the QA app tests: a real station archive written by defectgate.archive.Archive
with synthetic part images, and a real ONNX bundle whose (constant) output is known, so a
pre-label's position in source pixels can be checked exactly. (A uniquely named module rather
than `from conftest import`: several test folders have a conftest.py.)"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("MPLBACKEND", "Agg")

from defectgate.archive import Archive  # noqa: E402
from defectgate.bundle import InputSpec, OutputSpec, Sidecar, sha256_file, write_sidecar  # noqa: E402
from defectgate.synthparts import CLASSES, render_scene  # noqa: E402
from defectgate.types import Detections, Outcome, Verdict  # noqa: E402

CLASS_NAMES = list(CLASSES)
IMGSZ = 64
ANCHORS = 16
# The constant model: anchor 0 is a 'dent' (class 1) at cx=32, cy=32, w=16, h=8 input pixels, score 0.9.
CONST_BOX_INPUT = (24.0, 28.0, 40.0, 36.0)
CONST_CLASS = 1


def _const_onnx(path: Path) -> None:
    onnx = pytest.importorskip("onnx", reason="building the test model needs the onnx package ([train] extra)")
    from onnx import TensorProto, helper, numpy_helper

    nc = len(CLASS_NAMES)
    out = np.full((1, 4 + nc, ANCHORS), 0.01, np.float32)
    out[0, 0:4, :] = np.array([[8.0], [8.0], [4.0], [4.0]], np.float32)  # small boxes, low scores
    out[0, 0:4, 0] = [32.0, 32.0, 16.0, 8.0]
    out[0, 4 + CONST_CLASS, 0] = 0.9
    const = numpy_helper.from_array(out, "const")
    zero = numpy_helper.from_array(np.zeros((1, 1, 1), np.float32), "zero")
    # output = const + 0 * mean(images): a real graph that reads its input
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["m"], keepdims=0, axes=[1, 2, 3]),
        helper.make_node("Reshape", ["m", "shape"], ["m3"]),
        helper.make_node("Mul", ["m3", "zero"], ["z"]),
        helper.make_node("Add", ["const", "z"], ["output0"]),
    ]
    shape = numpy_helper.from_array(np.array([1, 1, 1], np.int64), "shape")
    graph = helper.make_graph(
        nodes, "const_yolo",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, IMGSZ, IMGSZ])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 4 + nc, ANCHORS])],
        initializer=[const, zero, shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def make_bundle(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    _const_onnx(root / "model.onnx")
    write_sidecar(root, Sidecar(
        model_file="model.onnx", sha256=sha256_file(root / "model.onnx"), architecture="const-test",
        classes=CLASS_NAMES, input=InputSpec(imgsz=(IMGSZ, IMGSZ)),
        output=OutputSpec(layout="yolo_raw", shape=[1, 4 + len(CLASS_NAMES), ANCHORS]), version="vtest"))
    return root


def make_archive(root: Path, n: int = 12, hw: tuple[int, int] = (96, 128), seed0: int = 0) -> Path:
    """n parts through the real Archive writer: NG when the scene has defects (the line's boxes
    are the true ones, confidence 0.8) and every 4th good part as an overkill (a false reject
    with an invented box); OK images are all kept (ok_sample_rate=1) so escapes can be reviewed."""
    arch = Archive(root, run_id="run1", station="line1", classes=CLASS_NAMES, ok_sample_rate=1.0)
    for i in range(n):
        scene = render_scene(seed0 + i, hw, ng_rate=0.5)
        if scene.ng:
            dets = Detections(scene.boxes, np.full(len(scene.boxes), 0.8, np.float32), scene.class_ids)
        elif i % 4 == 0:
            h, w = hw
            dets = Detections(np.array([[w * 0.4, h * 0.4, w * 0.6, h * 0.6]], np.float32),
                              np.array([0.55], np.float32), np.array([0]))
        else:
            dets = Detections.empty()
        ng = len(dets) > 0
        reasons = [f"{CLASS_NAMES[c]}>=0.50" for c in sorted(set(dets.class_id.tolist()))]
        arch.submit(Verdict(part_id=i, outcome=Outcome.NG if ng else Outcome.OK, reasons=reasons, detections=dets,
                            t_capture=float(i), t_decided=float(i) + 0.02, model_version="vtest",
                            truth_ng=scene.ng), scene.image)
    arch.close()
    return root


def make_shadow_archive(root: Path, n: int = 12, hw: tuple[int, int] = (96, 128), flip_every: int = 3) -> dict:
    """A line run in shadow mode through the real Archive writer: the live model ('vlive') is right on
    every part; the candidate ('vcand') flips the verdict of every `flip_every`-th part (an invented box
    on a good part, nothing on a bad one). OK images are not sampled, so a good part the candidate
    rejects is only kept through its shadow row. Returns {part_id: (truth NG, live NG, candidate NG)}."""
    arch = Archive(root, run_id="run1", station="line1", classes=CLASS_NAMES, ok_sample_rate=0.0)
    truth = {}
    h, w = hw
    invented = Detections(np.array([[w * 0.3, h * 0.3, w * 0.5, h * 0.5]], np.float32), np.array([0.7], np.float32),
                          np.array([2]))
    for i in range(n):
        scene = render_scene(100 + i, hw, ng_rate=0.5)
        live_dets = Detections(scene.boxes, np.full(len(scene.boxes), 0.8, np.float32), scene.class_ids) \
            if scene.ng else Detections.empty()
        flip = i % flip_every == 0
        cand_dets = (Detections.empty() if scene.ng else invented) if flip else live_dets
        verdicts = []
        for dets, version, t in ((live_dets, "vlive", 0.02), (cand_dets, "vcand", 0.05)):
            reasons = [f"{CLASS_NAMES[c]}>=0.50" for c in sorted(set(dets.class_id.tolist()))]
            verdicts.append(Verdict(part_id=i, outcome=Outcome.NG if len(dets) else Outcome.OK, reasons=reasons,
                                    detections=dets, t_capture=float(i), t_decided=float(i) + t, model_version=version,
                                    truth_ng=scene.ng))
        live, cand = verdicts
        arch.submit(live, scene.image)
        arch.submit_shadow(cand, live, scene.image)
        truth[i] = (scene.ng, live.is_ng, cand.is_ng)
    arch.close()
    return truth
