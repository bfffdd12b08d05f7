import cv2
import numpy as np
import pytest

from defectgate.bundle import InputSpec
from defectgate.preprocess import Preprocessor, letterbox


@pytest.mark.parametrize("src_hw,out_hw", [((240, 320), (192, 192)), ((200, 200), (224, 224)), ((480, 640), (320, 320)),
                                           ((100, 300), (160, 160))])
def test_letterbox_box_round_trip(src_hw, out_hw):
    img = np.random.default_rng(0).integers(0, 255, (*src_hw, 3), np.uint8)
    _, info = letterbox(img, out_hw)
    boxes = np.array([[0, 0, src_hw[1], src_hw[0]], [10, 20, 50, 60]], np.float32)
    back = info.to_source(info.to_input(boxes))
    np.testing.assert_allclose(back, boxes, atol=1e-3)
    inp = info.to_input(boxes[:1])[0]
    # the whole source image lands inside the model input, centred
    assert inp[0] >= 0 and inp[1] >= 0 and inp[2] <= out_hw[1] + 0.5 and inp[3] <= out_hw[0] + 0.5
    assert abs((inp[0] - 0) - (out_hw[1] - inp[2])) <= 1.0


def test_letterbox_pads_with_114_and_keeps_content():
    img = np.full((100, 200, 3), 7, np.uint8)
    out, info = letterbox(img, (200, 200))
    assert info.gain == 1.0 and info.pad_y == 50
    assert (out[:50] == 114).all() and (out[150:] == 114).all()
    assert (out[50:150] == 7).all()


def test_preprocessor_normalises_rgb_nchw_into_reused_buffer():
    spec = InputSpec(imgsz=(64, 64))
    pre = Preprocessor(spec)
    img = np.zeros((64, 64, 3), np.uint8)
    img[..., 0] = 255  # blue in BGR
    batch, _ = pre(img)
    assert batch.shape == (1, 3, 64, 64) and batch.dtype == np.float32
    assert batch[0, 2].max() == pytest.approx(1.0)  # blue is the last channel in RGB
    assert batch[0, 0].max() == 0.0
    batch2, _ = pre(np.zeros((32, 32, 3), np.uint8))
    assert batch2 is batch  # preallocated, no per-frame allocation


def test_preprocessor_applies_mean_and_std():
    spec = InputSpec(imgsz=(8, 8), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    batch, _ = Preprocessor(spec)(np.full((8, 8, 3), 255, np.uint8))
    np.testing.assert_allclose(batch, 2.0, atol=1e-5)


@pytest.mark.parametrize("src_hw, out_hw", [((240, 320), (192, 192)), ((320, 240), (160, 160)),
                                            ((240, 320), (240, 320)), ((100, 300), (128, 96))])
def test_a_reused_canvas_is_repainted_everywhere(src_hw, out_hw):
    """The letterbox paints only the borders around the resized window: every pixel must still be
    written, whatever the previous frame left in the reused canvas."""
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (*src_hw, 3), dtype=np.uint8)
    fresh, info = letterbox(image, out_hw)
    reused = np.full((*out_hw, 3), 7, np.uint8)  # garbage from "the previous frame"
    again, info2 = letterbox(image, out_hw, out=reused)
    assert again is reused and info2 == info
    np.testing.assert_array_equal(again, fresh)
    # and it is the plain construction: a grey canvas with the resized image pasted in
    nh, nw = int(round(src_hw[0] * info.gain)), int(round(src_hw[1] * info.gain))
    want = np.full((*out_hw, 3), 114, np.uint8)
    top, left = int(info.pad_y), int(info.pad_x)
    want[top:top + nh, left:left + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR) \
        if (nw, nh) != (src_hw[1], src_hw[0]) else image
    np.testing.assert_array_equal(fresh, want)


def test_in_graph_preprocessor_hands_out_the_bgr_canvas():
    spec = InputSpec(imgsz=(64, 64))
    pre = Preprocessor(spec, in_graph=True)
    image = np.random.default_rng(2).integers(0, 256, (48, 80, 3), dtype=np.uint8)
    batch, info = pre(image)
    assert batch.shape == (1, 64, 64, 3) and batch.dtype == np.uint8
    np.testing.assert_array_equal(batch[0], letterbox(image, (64, 64))[0])  # BGR, not normalised
    assert pre(image)[0] is batch  # the same preallocated buffer every frame
