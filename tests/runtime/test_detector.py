"""The one path image -> Detections: the sidecar decides max_det, the NMS IoU, the views and the
decode floor; the Detector owns (and releases) its engine."""

from __future__ import annotations

import shutil

import numpy as np

from defectgate.backends import open_engines
from defectgate.bundle import load_bundle, read_sidecar, write_sidecar
from defectgate.detector import Detector
from defectgate.tta import PRESETS

from station_helpers import IMGSZ


def _frame(seed=0):
    rng = np.random.default_rng(seed)
    img = np.full((IMGSZ + 8, IMGSZ + 24, 3), 60, np.uint8)  # not the input size: letterboxed
    img[10:40, 8:50] = 170
    return np.clip(img + rng.integers(0, 25, img.shape), 0, 255).astype(np.uint8)


def _variant(tiny_bundle, tmp_path, **update):
    root = tmp_path / "variant"
    shutil.copytree(tiny_bundle, root)
    side = read_sidecar(root / "model.json")
    write_sidecar(root, side.model_copy(update=update))
    return load_bundle(root)


def test_the_sidecar_decides_max_det_and_the_decode_floor(tiny_bundle, tmp_path):
    side = load_bundle(tiny_bundle).sidecar
    few = _variant(tiny_bundle, tmp_path, output=side.output.model_copy(update={"max_det": 3}),
                   class_thresholds={side.classes[0]: 0.02})
    engines = open_engines()
    detector = Detector(few, backend_name="onnxruntime", threads=1)
    assert open_engines() == engines + 1
    assert detector.conf_floor == 0.02, "down to the lowest class threshold the bundle rejects at"
    img = _frame()
    low = detector.detect(img, conf=0.001)
    assert len(low) == 3, "at most the sidecar's max_det boxes, whatever the floor"
    (again,) = detector([img])
    assert np.all(again.confidence >= 0.02)
    np.testing.assert_array_equal(again.xyxy, low[low.confidence >= 0.02].xyxy)
    assert (low.xyxy[:, [0, 2]] <= img.shape[1]).all() and (low.xyxy[:, [1, 3]] <= img.shape[0]).all()
    detector.warm_up()
    detector.close()
    detector.close()  # idempotent: counted once
    assert open_engines() == engines


def test_the_views_are_the_detectors_unless_asked_for_the_bare_network(tiny_bundle, tmp_path):
    side = load_bundle(tiny_bundle).sidecar
    bundle = _variant(tiny_bundle, tmp_path, tta=PRESETS["hflip"],
                      output=side.output.model_copy(update={"strides": [8, 16, 32]}))
    with_views = Detector(bundle, backend_name="onnxruntime", threads=1)
    bare = Detector(bundle, backend_name="onnxruntime", threads=1, views=False)
    batch = with_views.prepare(_frame(1))[0].copy()
    a, b = with_views.infer(batch)[0], bare.infer(batch)[0]
    with_views.close(), bare.close()
    assert with_views.backend.name.endswith("+tta:hflip") and "+tta" not in bare.backend.name
    assert a.shape == b.shape and not np.allclose(a, b)
