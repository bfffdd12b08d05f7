import numpy as np
import pytest

from defectgate.types import Detections, Frame


def dets(n=3):
    xyxy = np.array([[0, 0, 10, 10], [5, 5, 25, 15], [1, 2, 3, 4]], np.float32)[:n]
    return Detections(xyxy, np.array([0.9, 0.5, 0.1], np.float32)[:n], np.array([0, 1, 2])[:n])


def test_mask_indexing_filters_all_arrays_together():
    d = dets()
    kept = d[d.confidence > 0.3]
    assert len(kept) == 2
    assert kept.class_id.tolist() == [0, 1]
    assert kept.xyxy[1].tolist() == [5, 5, 25, 15]


def test_indexing_keeps_the_checked_types_and_refuses_what_is_no_index():
    d = Detections(np.array([[0, 0, 2, 2], [1, 1, 4, 5]]), [0.9, 0.2], [1, 0])
    for sub in (d[np.array([True, False])], d[np.array([1])], d[1], d[np.flatnonzero(d.confidence > 0.5)]):
        assert sub.xyxy.dtype == np.float32 and sub.xyxy.shape == (1, 4)
        assert sub.confidence.dtype == np.float32 and sub.class_id.dtype == np.int64
    assert len(d[np.zeros(0, np.int64)]) == 0
    with pytest.raises(IndexError, match="boolean mask or integer indices"):
        d[np.array([0.0])]
    with pytest.raises(IndexError, match="boolean mask or integer indices"):
        d[np.array([[0]])]


def test_area_and_center():
    d = dets(2)
    assert d.area.tolist() == [100.0, 200.0]
    assert d.center[1].tolist() == [15.0, 10.0]


def test_length_mismatch_is_refused():
    with pytest.raises(ValueError, match="disagree in length"):
        Detections(np.zeros((2, 4)), np.zeros(3), np.zeros(2, int))


def test_wrong_mask_shape_is_refused():
    with pytest.raises(IndexError):
        dets()[np.array([True, False])]


def test_non_integer_class_ids_are_refused():
    with pytest.raises(ValueError, match="integers"):
        Detections(np.zeros((1, 4)), np.ones(1), np.array([0.5]))


def test_records_round_trip_with_class_names():
    d = dets()
    recs = d.to_records(["scratch", "dent", "crack"])
    assert recs[1]["class"] == "dent"
    back = Detections.from_records(recs)
    np.testing.assert_allclose(back.xyxy, d.xyxy, atol=0.01)
    assert back.class_id.tolist() == d.class_id.tolist()
    assert len(Detections.from_records([])) == 0


def test_frame_requires_bgr_uint8():
    Frame(np.zeros((4, 4, 3), np.uint8), 0.0, 0)
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        Frame(np.zeros((4, 4), np.uint8), 0.0, 0)
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        Frame(np.zeros((4, 4, 3), np.float32), 0.0, 0)
