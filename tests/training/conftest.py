"""Session fixtures for the model-side tests: one tiny synthetic dataset, one 1-epoch training run
(with a probe transform appended to the albumentations pipeline), one exported bundle. Everything
heavier reuses these, so the whole training test module costs one training and one export."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from box_probe import BoxProbe, make_probe

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory) -> Path:
    """24 synthetic part images (96x128), seed 3: scratches, dents, cracks, stains and OK parts."""
    from defectgate_training.data.synth import synthesize

    out = tmp_path_factory.mktemp("dg-data") / "synth"
    synthesize(out, images=24, seed=3, hw=(96, 128))
    return out / "data.yaml"


@pytest.fixture(scope="session")
def trained(synth_data, tmp_path_factory):
    """One 1-epoch YOLO11n run at 64 px with the inspection pipeline (+ rotate90) and a probe."""
    pytest.importorskip("ultralytics", reason="needs the [train] extra")
    from defectgate_training.train import load_train_config, train

    BoxProbe.calls.clear()
    out = tmp_path_factory.mktemp("dg-train") / "run"
    cfg = load_train_config(None, {"data": str(synth_data), "epochs": 1, "imgsz": 64, "batch": 8, "workers": 0,
                                   "device": "cpu", "seed": 0, "out": str(out),
                                   "augment": {"preset": "inspection", "rotate90": 0.5},
                                   "hyp": {"plots": False, "val": True}})
    result = train(cfg, extra_transforms=[make_probe()])
    return result


@pytest.fixture(scope="session")
def bundle(trained, synth_data, tmp_path_factory):
    from defectgate_training.export import export_bundle

    out = tmp_path_factory.mktemp("dg-bundle") / "bundle"
    return export_bundle(trained.best, out, str(synth_data), parity_images=6)
