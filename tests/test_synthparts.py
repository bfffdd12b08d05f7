"""The synthetic part renderer: deterministic, labelled tightly, defects on the part, sized to
survive the 320 -> 192 px downscale the demo trains at."""

from __future__ import annotations

import numpy as np
import pytest

from defectgate.synthparts import CLASSES, Scene, render_scene


def test_same_seed_same_scene_and_different_seed_different_scene():
    a, b, c = render_scene(7), render_scene(7), render_scene(8)
    assert np.array_equal(a.image, b.image)
    assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.class_ids, b.class_ids)
    assert not np.array_equal(a.image, c.image)


def test_types_and_shapes():
    s = render_scene(3, hw=(120, 160), ng_rate=1.0)
    assert isinstance(s, Scene)
    assert s.image.shape == (120, 160, 3) and s.image.dtype == np.uint8
    assert s.boxes.dtype == np.float32 and s.boxes.shape[1] == 4
    assert s.class_ids.dtype == np.int64 and s.class_ids.shape == (len(s.boxes),)
    assert s.part_box.shape == (4,) and s.part_box.dtype == np.float32
    assert s.ng and 1 <= len(s.boxes) <= 3


def test_ng_rate_zero_gives_ok_parts_and_one_gives_ng_parts():
    ok = [render_scene(i, ng_rate=0.0) for i in range(5)]
    assert all(not s.ng and s.boxes.shape == (0, 4) and s.class_ids.shape == (0,) for s in ok)
    ng = [render_scene(i, ng_rate=1.0) for i in range(10)]
    assert sum(s.ng for s in ng) >= 9  # a defect may fail to fit on the part, very rarely


def test_ng_rate_is_respected_on_average():
    frac = np.mean([render_scene(i, hw=(48, 64), ng_rate=0.4).ng for i in range(200)])
    assert 0.3 < frac < 0.5


@pytest.fixture(scope="module")
def ng_scenes():
    return [render_scene(1000 + i, ng_rate=1.0) for i in range(60)]


def test_boxes_are_on_the_part_and_inside_the_image(ng_scenes):
    for s in ng_scenes:
        h, w = s.image.shape[:2]
        px0, py0, px1, py1 = s.part_box
        assert px1 - px0 > 40 and py1 - py0 > 40
        for x0, y0, x1, y1 in s.boxes:
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
            assert x0 >= px0 - 1 and y0 >= py0 - 1 and x1 <= px1 + 1 and y1 <= py1 + 1


def test_all_classes_appear_and_sizes_survive_downscale(ng_scenes):
    ids = np.concatenate([s.class_ids for s in ng_scenes])
    assert set(ids.tolist()) == set(range(len(CLASSES)))
    boxes = np.concatenate([s.boxes for s in ng_scenes])
    longer = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    shorter = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    # at 192 px a defect's longer side should still span several pixels
    assert np.median(longer) >= 15 and longer.min() >= 8
    assert shorter.min() >= 3 and np.percentile(longer, 95) <= 90


def test_defect_boxes_hold_visible_change(ng_scenes):
    """A box is where the picture differs from the surrounding metal: the pixels inside a box
    vary more than a same-size window of an OK part's plain metal."""
    for s in ng_scenes[:20]:
        gray = s.image.astype(np.float32).mean(axis=2)
        for x0, y0, x1, y1 in s.boxes.astype(int):
            patch = gray[y0:y1, x0:x1]
            assert patch.max() - patch.min() > 25


def test_part_is_roughly_centred():
    for i in range(20):
        s = render_scene(i, center_jitter=0.08)
        cx = (s.part_box[0] + s.part_box[2]) / 2
        cy = (s.part_box[1] + s.part_box[3]) / 2
        # an L-bracket's bounding box centre sits up to ~25 px off the part's pivot
        assert abs(cx - 160) < 0.08 * 320 + 25 and abs(cy - 120) < 0.08 * 240 + 25
        assert s.part_box[0] >= 0 and s.part_box[1] >= 0 and s.part_box[2] <= 320 and s.part_box[3] <= 240


def test_too_small_image_is_refused():
    with pytest.raises(ValueError, match="too small"):
        render_scene(0, hw=(16, 16))
