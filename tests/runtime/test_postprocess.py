import numpy as np
import pytest

from defectgate.bundle import OutputSpec
from defectgate.errors import BackendError
from defectgate.postprocess import batched_nms, decode, nms
from defectgate.preprocess import LetterboxInfo

IDENT = LetterboxInfo(gain=1.0, pad_x=0.0, pad_y=0.0, src_hw=(100, 100))


def test_nms_suppresses_overlaps_keeps_separate_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    keep = nms(boxes, np.array([0.8, 0.9, 0.5], np.float32), 0.5)
    assert keep.tolist() == [1, 2]


@pytest.mark.parametrize("n", [2, 9, 40, 64])
def test_nms_on_a_few_candidates_keeps_what_the_greedy_loop_keeps(monkeypatch, n):
    """The IoU-matrix path for small candidate sets against the per-box loop it replaces, on clustered
    boxes (many overlaps near the threshold), tied scores included."""
    import defectgate.postprocess as post

    rng = np.random.default_rng(n)
    for trial in range(30):
        xy = rng.uniform(0, 60, (n, 2)).astype(np.float32)
        xyxy = np.concatenate([xy, xy + rng.uniform(5, 30, (n, 2)).astype(np.float32)], 1)
        scores = rng.choice(np.linspace(0.1, 0.9, max(2, n // 3)), n).astype(np.float32)
        for iou in (0.3, 0.5, 0.7):
            small = nms(xyxy, scores, iou)
            monkeypatch.setattr(post, "SMALL_NMS", 0)
            loop = nms(xyxy, scores, iou)
            monkeypatch.setattr(post, "SMALL_NMS", 64)
            assert small.tolist() == loop.tolist(), (n, trial, iou)


def test_batched_nms_keeps_overlapping_boxes_of_different_classes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11]], np.float32)
    keep = batched_nms(boxes, np.array([0.8, 0.9], np.float32), np.array([0, 1]), 0.5)
    assert sorted(keep.tolist()) == [0, 1]


def raw_yolo(nc=3, anchors=8):
    raw = np.zeros((1, 4 + nc, anchors), np.float32)
    # anchor 0: class 1 at 0.9, box centred (20, 30) size 10x20
    raw[0, :4, 0] = [20, 30, 10, 20]
    raw[0, 4 + 1, 0] = 0.9
    # anchor 1: near-duplicate of anchor 0, lower score -> suppressed
    raw[0, :4, 1] = [21, 30, 10, 20]
    raw[0, 4 + 1, 1] = 0.6
    # anchor 2: class 2 at 0.4 elsewhere
    raw[0, :4, 2] = [70, 70, 8, 8]
    raw[0, 4 + 2, 2] = 0.4
    # anchor 3: below threshold
    raw[0, :4, 3] = [50, 50, 8, 8]
    raw[0, 4 + 0, 3] = 0.1
    return raw


def test_decode_yolo_raw_hand_made_tensor():
    spec = OutputSpec(layout="yolo_raw", shape=[1, 7, 8])
    d = decode(raw_yolo(), spec, 3, IDENT, conf_threshold=0.25, iou_threshold=0.5)
    assert len(d) == 2
    order = np.argsort(-d.confidence)
    assert d.class_id[order].tolist() == [1, 2]
    np.testing.assert_allclose(d.xyxy[order[0]], [15, 20, 25, 40])
    np.testing.assert_allclose(d.confidence[order], [0.9, 0.4], atol=1e-6)


def test_decode_maps_back_through_letterbox():
    info = LetterboxInfo(gain=0.5, pad_x=10, pad_y=0, src_hw=(200, 200))
    spec = OutputSpec(layout="yolo_raw", shape=[1, 7, 8])
    d = decode(raw_yolo(), spec, 3, info, 0.5, 0.5)
    np.testing.assert_allclose(d.xyxy[0], [10, 40, 30, 80])


def test_decode_end2end_layout():
    raw = np.zeros((1, 300, 6), np.float32)
    raw[0, 0] = [5, 6, 15, 26, 0.8, 2]
    raw[0, 1] = [40, 40, 50, 50, 0.2, 0]
    spec = OutputSpec(layout="end2end", shape=[1, 300, 6])
    d = decode(raw, spec, 3, IDENT, 0.25, 0.5)
    assert len(d) == 1 and d.class_id.tolist() == [2]
    np.testing.assert_allclose(d.xyxy[0], [5, 6, 15, 26])


def test_decode_refuses_output_that_does_not_match_sidecar():
    with pytest.raises(BackendError, match="sidecar does not match"):
        decode(raw_yolo(nc=3), OutputSpec(layout="yolo_raw", shape=[1, 6, 8]), 2, IDENT, 0.25, 0.5)
    with pytest.raises(BackendError, match="end2end"):
        decode(raw_yolo(), OutputSpec(layout="end2end", shape=[1, 300, 6]), 3, IDENT, 0.25, 0.5)
    bad = np.zeros((1, 300, 6), np.float32)
    bad[0, 0] = [0, 0, 1, 1, 0.9, 7]
    with pytest.raises(BackendError, match="class ids"):
        decode(bad, OutputSpec(layout="end2end", shape=[1, 300, 6]), 3, IDENT, 0.25, 0.5)


def _decode_argmax_first(raw, nc, conf, iou, max_det):
    """The decode before issue 22 (class argmax over every anchor, then the threshold): the reference
    the threshold-first decode must equal."""
    scores = raw[4:]
    class_id = scores.argmax(0)
    score = scores[class_id, np.arange(raw.shape[1])]
    keep = score >= conf
    cx, cy, w, h = raw[:4, keep]
    xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1).reshape(-1, 4)
    idx = batched_nms(xyxy, score[keep], class_id[keep], iou)[:max_det]
    return xyxy[idx], score[keep][idx], class_id[keep][idx]


@pytest.mark.parametrize("seed", range(4))
def test_threshold_first_decode_equals_the_argmax_first_decode(seed):
    rng = np.random.default_rng(seed)
    nc, anchors = 5, 400
    raw = np.empty((1, 4 + nc, anchors), np.float32)
    raw[0, :2] = rng.uniform(0, 200, (2, anchors))
    raw[0, 2:4] = rng.uniform(2, 40, (2, anchors))
    raw[0, 4:] = rng.beta(0.3, 3.0, (nc, anchors))  # mostly low scores, a few high: a real head's spread
    raw[0, 4 + 2, :7] = raw[0, 4 + 4, :7]  # ties between classes: argmax must pick the same one
    raw[0, 4:, 20:23] = np.minimum(raw[0, 4:, 20:23], 0.5)
    raw[0, 4 + 3, 20:23] = 0.5  # exactly at a threshold: kept (score >= threshold)
    spec = OutputSpec(layout="yolo_raw", shape=[1, 4 + nc, anchors])
    for conf in (0.05, 0.3, 0.5, 0.7):
        got = decode(raw, spec, nc, IDENT, conf, 0.45, max_det=50)
        xyxy, score, cls = _decode_argmax_first(raw[0], nc, conf, 0.45, 50)
        assert len(got) == len(score) > 0
        np.testing.assert_array_equal(got.confidence, score)
        np.testing.assert_array_equal(got.class_id, cls)
        np.testing.assert_array_equal(got.xyxy, IDENT.to_source(xyxy))


def test_a_clean_part_decodes_to_empty_detections_of_the_right_shapes():
    """The early return for a frame where no anchor passes the threshold, alone and among views."""
    raw = np.zeros((1, 7, 50), np.float32)
    raw[0, :4] = 10.0
    raw[0, 4:] = 0.01
    got = decode(raw, OutputSpec(layout="yolo_raw", shape=[1, 7, 50]), 3, IDENT, 0.25, 0.45)
    assert len(got) == 0 and got.xyxy.shape == (0, 4) and got.class_id.shape == (0,)
    views = np.concatenate([raw, raw])  # two fused views, neither sees anything
    fused = decode(views, OutputSpec(layout="yolo_raw", shape=[2, 7, 50]), 3, IDENT, 0.25, 0.45)
    assert len(fused) == 0 and fused.xyxy.shape == (0, 4)
