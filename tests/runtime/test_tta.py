"""Test-time augmentation (defectgate.tta, postprocess.fuse_views): the anchor permutation, mirror
invariance on the real tiny YOLO11n through ONNX Runtime, shrunk views mapped back to the frame,
box fusion, the station's own path, and the sidecar checks that refuse a bundle whose head or
geometry cannot take the views."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from defectgate.backends import load_backend
from defectgate.detector import Detector
from defectgate.bundle import InputSpec, OutputSpec, TtaSpec, load_bundle, read_sidecar, write_sidecar
from defectgate.errors import BundleError
from defectgate.postprocess import decode, fuse_views
from defectgate.preprocess import LetterboxInfo, Preprocessor
from defectgate.tta import FLIPS, PRESETS, TTABackend, anchor_grids, view_permutation

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
    write_sidecar(root, side.model_copy(update={"output": out, "tta": PRESETS[mode]}))
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
    detector = Detector(bundle, backend_name="onnxruntime", threads=1)  # the views are the Detector's
    assert detector.backend.name.endswith(f"+tta:{mode}")
    pre = Preprocessor(bundle.sidecar.input)
    img = _frame()
    try:
        plain = detector.infer(pre(img)[0].copy())[0]
        mirrored = detector.infer(pre(np.ascontiguousarray(img[:, ::-1]))[0].copy())[0]
    finally:
        detector.close()
    assert plain.shape == (1, 4 + len(bundle.classes), sum(r * c for r, c in anchor_grids((IMGSZ, IMGSZ), STRIDES)))
    perm = view_permutation(anchor_grids((IMGSZ, IMGSZ), STRIDES), True, False)
    back = mirrored[..., perm].copy()
    back[..., 0, :] = IMGSZ - back[..., 0, :]
    np.testing.assert_allclose(back, plain, atol=2e-4)
    # and the views really differ from the frame alone: averaging changes the output
    bare = load_backend(bundle, "onnxruntime", threads=1)  # the engine alone: the bare network
    try:
        single = bare.infer(pre(img)[0].copy())[0]
    finally:
        bare.close()
    assert np.abs(single[:, 4:] - plain[:, 4:]).max() > 1e-3


def test_station_detections_of_a_mirrored_frame_are_mirrored(tiny_bundle, tmp_path):
    bundle = _tta_bundle(tiny_bundle, tmp_path, "hflip")
    detector = Detector(bundle, backend_name="onnxruntime", threads=1, conf_floor=0.01)
    img = _frame(1)
    try:
        a, b = detector([img, np.ascontiguousarray(img[:, ::-1])])
    finally:
        detector.close()
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
    tta = TTABackend(rec, TtaSpec(flips="hvflip"), InputSpec(imgsz=imgsz), STRIDES, nc)
    batch = np.random.default_rng(1).random((1, 3, *imgsz), dtype=np.float32)
    keep = batch.copy()
    tta.infer(batch)
    np.testing.assert_array_equal(batch, keep)
    assert len(rec.seen) == len(FLIPS["hvflip"]) == 4
    np.testing.assert_array_equal(rec.seen[1], batch[..., ::-1])
    np.testing.assert_array_equal(rec.seen[2], batch[..., ::-1, :])
    np.testing.assert_array_equal(rec.seen[3], batch[..., ::-1, ::-1])
    np.testing.assert_array_equal(raw, np.random.default_rng(0).random((1, 4 + nc, anchors), dtype=np.float32))


def test_wrong_output_shape_is_named():
    rec = _Recorder(np.zeros((1, 6, 10), np.float32))
    tta = TTABackend(rec, TtaSpec(flips="hflip"), InputSpec(imgsz=(64, 64)), STRIDES, 2)
    with pytest.raises(Exception, match=r"not \(1, 6, 84\).*output.strides"):
        tta.infer(np.zeros((1, 3, 64, 64), np.float32))


def test_no_tta_leaves_the_backend_as_it_is(tiny_bundle):
    bundle = load_bundle(tiny_bundle)
    assert not bundle.sidecar.tta.active
    detector = Detector(bundle, backend_name="onnxruntime", threads=1)
    try:
        assert "+tta" not in detector.backend.name
    finally:
        detector.close()


class _BoxAt:
    """A fake head that puts one box of class 0 on every anchor: at the centre of the bright square in
    whatever input it is given (found from the pixels, as a model would), 0 elsewhere."""

    name = "box-at"

    def __init__(self, anchors, nc=2):
        self.anchors, self.nc = anchors, nc

    def infer(self, batch):
        ys, xs = np.nonzero(batch[0, 0] > 0.9)
        raw = np.zeros((1, 4 + self.nc, self.anchors), np.float32)
        raw[0, 0], raw[0, 1] = (xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2
        raw[0, 2], raw[0, 3] = xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()
        raw[0, 4] = 0.8
        return [raw]

    def close(self):
        pass


def test_shrunk_views_map_their_boxes_back_to_the_frame():
    """A square at a known place: every scale's view sees it shrunk and moved toward the centre;
    mapped back, every view's box is the square's box in the frame's input pixels."""
    imgsz, spec = (64, 64), InputSpec(imgsz=(64, 64))
    anchors = sum(r * c for r, c in anchor_grids(imgsz, STRIDES))
    batch = np.full((1, 3, *imgsz), 114 / 255, np.float32)
    batch[..., 8:24, 36:60] = 1.0  # rows 8-23, columns 36-59
    tta = TTABackend(_BoxAt(anchors), TtaSpec(flips="hflip", scales=[1.0, 0.75, 0.5]), spec, STRIDES, 2)
    assert tta.name == "box-at+tta:hflip@1,0.75,0.5"
    out = tta.infer(batch)[0]
    assert out.shape == (3, 6, anchors)
    for k in range(3):  # resizing blurs the square's edges by about a pixel at the smaller scales
        np.testing.assert_allclose(out[k, :4, 0], [48, 16, 24, 16], atol=1.5 / [1.0, 0.75, 0.5][k])
    info = LetterboxInfo(gain=1.0, pad_x=0.0, pad_y=0.0, src_hw=imgsz)
    dets = decode(out, OutputSpec(layout="yolo_raw", shape=[1, 6, anchors]), 2, info, 0.25, 0.45)
    assert len(dets) == 1 and dets.class_id[0] == 0  # the three views' boxes fuse into one
    assert dets.confidence[0] == pytest.approx(0.8)
    np.testing.assert_allclose(dets.xyxy[0], [36, 8, 60, 24], atol=1.5)


def test_fuse_views_scores_by_how_many_views_saw_the_defect():
    box = np.array([[10, 10, 30, 30]], np.float32)
    shifted = box + 2
    far = np.array([[50, 50, 60, 60]], np.float32)
    views = [(np.concatenate([box, far]), np.array([0.9, 0.6], np.float32), np.array([1, 1])),
             (shifted, np.array([0.7], np.float32), np.array([1])),
             (box, np.array([0.5], np.float32), np.array([0]))]  # same place, other class: not fused
    xyxy, conf, cls = fuse_views(views)
    assert len(conf) == 3
    np.testing.assert_allclose(conf, [(0.9 + 0.7) / 3, 0.6 / 3, 0.5 / 3], rtol=1e-6)
    np.testing.assert_array_equal(cls, [1, 1, 0])
    np.testing.assert_allclose(xyxy[0], (box[0] * 0.9 + shifted[0] * 0.7) / 1.6, rtol=1e-6)
    # one view with two boxes in the group counts once, with its best score
    twice = [(np.concatenate([box, shifted]), np.array([0.8, 0.4], np.float32), np.array([1, 1])),
             (np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))]
    assert fuse_views(twice)[1].tolist() == pytest.approx([0.4])
    assert [len(a) for a in fuse_views([twice[1], twice[1]])] == [0, 0, 0]


def test_fused_scores_do_not_depend_on_the_callers_threshold():
    """The station decodes at its rules' floor, evaluation at 0.001: the fused scores must agree."""
    rng = np.random.default_rng(3)
    anchors = 84
    raw = rng.random((3, 6, anchors), dtype=np.float32)
    raw[:, :2] *= 64
    raw[:, 2:4] = raw[:, 2:4] * 20 + 4
    raw[:, 4:] **= 3
    spec, info = OutputSpec(layout="yolo_raw", shape=[1, 6, anchors]), LetterboxInfo(1.0, 0.0, 0.0, (64, 64))
    low, high = decode(raw, spec, 2, info, 0.001, 0.45), decode(raw, spec, 2, info, 0.3, 0.45)
    assert 0 < len(high) < len(low)
    kept = low.confidence >= 0.3
    np.testing.assert_allclose(high.confidence, low.confidence[kept])
    np.testing.assert_allclose(high.xyxy, low.xyxy[kept])


def _write_raw(root, **changes):
    path = root / "model.json"
    raw = json.loads(path.read_text())
    for key, value in changes.items():
        section, _, field = key.partition(".")
        (raw[section] if field else raw).__setitem__(field or section, value)
    path.write_text(json.dumps(raw))
    return path


HFLIP = {"flips": "hflip", "scales": [1.0]}


@pytest.mark.parametrize("changes, message", [
    ({"tta": HFLIP}, r"tta \{'flips': 'hflip', 'scales': \[1.0\]\} needs output.strides"),
    ({"tta": {"scales": [1.0, 0.8]}, "output.strides": [8, 16, 32], "output.layout": "end2end"},
     r"yolo_raw head.*--head nms"),
    ({"tta": HFLIP, "output.strides": [8, 16, 24]}, r"not a multiple of the largest stride 24"),
    ({"tta": HFLIP, "output.strides": [8, 16]}, r"give 80 anchors, output.shape says 84"),
    ({"tta": {"flips": "rot90"}, "output.strides": [8, 16, 32]}, r"sidecar key 'tta.flips'"),
    ({"tta": {"scales": [0.8, 1.0]}, "output.strides": [8, 16, 32]}, r"'tta.scales'.*must start with 1.0"),
    ({"tta": {"scales": [1.0, 0.1]}, "output.strides": [8, 16, 32]}, r"'tta.scales'.*0.25..1.0"),
])
def test_sidecar_refuses_tta_that_cannot_be_mirrored(tiny_bundle, tmp_path, changes, message):
    root = tmp_path / "b"
    shutil.copytree(tiny_bundle, root)
    path = _write_raw(root, **changes)
    with pytest.raises(BundleError, match=message) as err:
        load_bundle(root)
    assert str(path) in str(err.value)


def test_station_runs_a_bundle_with_all_views_and_records_them(tiny_bundle, tmp_path):
    """The threaded station on a 12-view bundle: every part judged once, the archive names the views."""
    import sqlite3

    from defectgate.station import build_station

    from station_helpers import station_cfg

    bundle = _tta_bundle(tiny_bundle, tmp_path, "hvflip-ms")
    uri = "synthetic://conveyor?parts=6&seed=2&width=96&height=72&realtime=0"
    built = build_station(station_cfg(bundle.root, tmp_path / "run", uri, "pipeline.overflow=block"))
    calls = {"n": 0}
    inner = built.station.inspector.backend.backend
    real = inner.infer

    def counting(batch):
        calls["n"] += 1
        return real(batch)

    inner.infer = counting
    stats = built.station.run()
    built.close()
    assert len(stats.verdicts) == 6 and stats.inference_failures == 0
    assert {v.part_id for v in stats.verdicts} == set(stats.captured)
    assert calls["n"] == 6 * 12  # 4 mirrors at each of 3 scales, per frame
    (backend,) = sqlite3.connect(built.archive.db_path).execute("SELECT backend FROM runs").fetchone()
    assert backend == "onnxruntime:CPUExecutionProvider+tta:hvflip@1,0.83,0.67"
