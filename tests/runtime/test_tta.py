"""Flip test-time augmentation (defectgate.tta): the anchor permutation, mirror invariance on the real
tiny YOLO11n through ONNX Runtime, the station's own path, and the sidecar checks that refuse a
bundle whose head or geometry cannot be mirrored."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from defectgate.backends import load_backend
from defectgate.bundle import load_bundle, read_sidecar, write_sidecar
from defectgate.errors import BundleError
from defectgate.postprocess import decode
from defectgate.preprocess import Preprocessor
from defectgate.tta import MODES, FlipTTABackend, anchor_grids, view_permutation

from station_helpers import IMGSZ

STRIDES = [8, 16, 32]


def _cell_centres(imgsz, strides):
    """x, y of every anchor's cell centre in input pixels, in the head's anchor order."""
    xs, ys = [], []
    for (rows, cols), s in zip(anchor_grids(imgsz, strides), strides):
        gy, gx = np.mgrid[0:rows, 0:cols]
        xs.append(((gx + 0.5) * s).ravel())
        ys.append(((gy + 0.5) * s).ravel())
    return np.concatenate(xs), np.concatenate(ys)


@pytest.mark.parametrize("flip_x, flip_y", [(True, False), (False, True), (True, True)])
def test_permutation_maps_each_anchor_onto_its_mirror_cell(flip_x, flip_y):
    imgsz = (64, 96)  # not square: rows and columns must not be mixed up
    x, y = _cell_centres(imgsz, STRIDES)
    perm = view_permutation(anchor_grids(imgsz, STRIDES), flip_x, flip_y)
    assert sorted(perm.tolist()) == list(range(len(x)))  # a permutation, level by level
    # the view's anchor perm[a] looks at the mirror image of the place anchor a looks at
    np.testing.assert_allclose(x[perm], imgsz[1] - x if flip_x else x)
    np.testing.assert_allclose(y[perm], imgsz[0] - y if flip_y else y)


def _tta_bundle(tiny_bundle, tmp_path, mode):
    root = tmp_path / f"tta-{mode}"
    shutil.copytree(tiny_bundle, root)
    side = read_sidecar(root / "model.json")
    out = side.output.model_copy(update={"strides": STRIDES})
    write_sidecar(root, side.model_copy(update={"output": out, "tta": mode}))
    return load_bundle(root)


def _frame(seed=0):
    rng = np.random.default_rng(seed)
    img = np.full((IMGSZ, IMGSZ, 3), 60, np.uint8)
    img[10:30, 8:50] = 170  # an asymmetric bright part, so mirrored frames really differ
    img[40:44, 12:20] = 20
    return np.clip(img + rng.integers(0, 25, img.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("mode", ["hflip", "hvflip"])
def test_averaged_output_is_mirror_invariant_on_the_real_model(tiny_bundle, tmp_path, mode):
    """Averaging over the views makes the head's output of a mirrored frame the mirror of the
    frame's output, anchor by anchor; a wrong permutation or a missed cx -> W - cx breaks it."""
    bundle = _tta_bundle(tiny_bundle, tmp_path, mode)
    backend = load_backend(bundle, "onnxruntime", threads=1)
    assert backend.name.endswith(f"+tta:{mode}")
    pre = Preprocessor(bundle.sidecar.input)
    img = _frame()
    try:
        plain = backend.infer(pre(img)[0].copy())[0]
        mirrored = backend.infer(pre(np.ascontiguousarray(img[:, ::-1]))[0].copy())[0]
    finally:
        backend.close()
    perm = view_permutation(anchor_grids((IMGSZ, IMGSZ), STRIDES), True, False)
    back = mirrored[..., perm].copy()
    back[..., 0, :] = IMGSZ - back[..., 0, :]
    np.testing.assert_allclose(back, plain, atol=2e-4)
    # and the views really differ from the frame alone: averaging changes the output
    bare = load_backend(bundle, "onnxruntime", threads=1, tta=False)
    try:
        single = bare.infer(pre(img)[0].copy())[0]
    finally:
        bare.close()
    assert np.abs(single[:, 4:] - plain[:, 4:]).max() > 1e-3


def test_station_detections_of_a_mirrored_frame_are_mirrored(tiny_bundle, tmp_path):
    bundle = _tta_bundle(tiny_bundle, tmp_path, "hflip")
    side = bundle.sidecar
    backend = load_backend(bundle, "onnxruntime", threads=1)
    pre = Preprocessor(side.input)
    img = _frame(1)

    def detect(image):
        batch, info = pre(image)
        return decode(backend.infer(batch)[0], side.output, len(side.classes), info, 0.01, side.iou_threshold)

    try:
        a, b = detect(img), detect(np.ascontiguousarray(img[:, ::-1]))
    finally:
        backend.close()
    assert len(a) > 0 and len(a) == len(b)
    order_a, order_b = np.argsort(-a.confidence), np.argsort(-b.confidence)
    np.testing.assert_allclose(a.confidence[order_a], b.confidence[order_b], atol=1e-4)
    mirrored = b.xyxy[order_b][:, [2, 1, 0, 3]] * [-1, 1, -1, 1] + [IMGSZ, 0, IMGSZ, 0]
    np.testing.assert_allclose(mirrored, a.xyxy[order_a], atol=1e-2)


class _Recorder:
    """A backend that returns a fixed head output and keeps every batch it was given."""

    name = "recorder"

    def __init__(self, raw):
        self.raw, self.seen = raw, []

    def infer(self, batch):
        self.seen.append(batch.copy())
        return [self.raw]  # the same array every call, as a backend reusing its output buffer would

    def close(self):
        pass


def test_views_are_mirrored_inputs_and_the_caller_batch_is_untouched():
    nc, imgsz = 2, (64, 64)
    anchors = sum(r * c for r, c in anchor_grids(imgsz, STRIDES))
    raw = np.random.default_rng(0).random((1, 4 + nc, anchors), dtype=np.float32)
    rec = _Recorder(raw)
    tta = FlipTTABackend(rec, "hvflip", imgsz, STRIDES, nc)
    batch = np.random.default_rng(1).random((1, 3, *imgsz), dtype=np.float32)
    keep = batch.copy()
    tta.infer(batch)
    np.testing.assert_array_equal(batch, keep)
    assert len(rec.seen) == len(MODES["hvflip"]) == 4
    np.testing.assert_array_equal(rec.seen[1], batch[..., ::-1])
    np.testing.assert_array_equal(rec.seen[2], batch[..., ::-1, :])
    np.testing.assert_array_equal(rec.seen[3], batch[..., ::-1, ::-1])
    np.testing.assert_array_equal(raw, np.random.default_rng(0).random((1, 4 + nc, anchors), dtype=np.float32))


def test_wrong_output_shape_is_named():
    rec = _Recorder(np.zeros((1, 6, 10), np.float32))
    tta = FlipTTABackend(rec, "hflip", (64, 64), STRIDES, 2)
    with pytest.raises(Exception, match=r"not \(1, 6, 84\).*output.strides"):
        tta.infer(np.zeros((1, 3, 64, 64), np.float32))


def test_no_tta_leaves_the_backend_as_it_is(tiny_bundle):
    bundle = load_bundle(tiny_bundle)
    assert bundle.sidecar.tta == "none"
    backend = load_backend(bundle, "onnxruntime", threads=1)
    try:
        assert "+tta" not in backend.name
    finally:
        backend.close()


def _write_raw(root, **changes):
    path = root / "model.json"
    raw = json.loads(path.read_text())
    for key, value in changes.items():
        section, _, field = key.partition(".")
        (raw[section] if field else raw).__setitem__(field or section, value)
    path.write_text(json.dumps(raw))
    return path


@pytest.mark.parametrize("changes, message", [
    ({"tta": "hflip"}, r"tta 'hflip' needs output.strides"),
    ({"tta": "hflip", "output.strides": [8, 16, 32], "output.layout": "end2end"}, r"yolo_raw head.*--head nms"),
    ({"tta": "hflip", "output.strides": [8, 16, 24]}, r"not a multiple of the largest stride 24"),
    ({"tta": "hflip", "output.strides": [8, 16]}, r"give 80 anchors, output.shape says 84"),
    ({"tta": "rot90", "output.strides": [8, 16, 32]}, r"sidecar key 'tta'"),
])
def test_sidecar_refuses_tta_that_cannot_be_mirrored(tiny_bundle, tmp_path, changes, message):
    root = tmp_path / "b"
    shutil.copytree(tiny_bundle, root)
    path = _write_raw(root, **changes)
    with pytest.raises(BundleError, match=message) as err:
        load_bundle(root)
    assert str(path) in str(err.value)
