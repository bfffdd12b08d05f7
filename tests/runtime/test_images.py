"""defectgate.images: one list of image suffixes, one folder listing, one reader with an error that
names the file, one rule for sampling calibration sets (TensorRT, OpenVINO and ONNX Runtime INT8)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from defectgate import engine_build
from defectgate.errors import DatasetError, SourceError
from defectgate.images import evenly_spaced, is_image, list_images, read_image


def test_evenly_spaced_keeps_the_first_and_the_last_and_all_when_few():
    items = list(range(10))
    assert evenly_spaced(items, 4) == [0, 3, 6, 9]
    assert evenly_spaced(items, 1) == [0]
    assert evenly_spaced(items, 10) == items and evenly_spaced(items, 25) == items
    assert evenly_spaced(items, 0) == items, "0: no limit"
    assert len(set(evenly_spaced(list(range(1000)), 200))) == 200


def test_listing_and_reading(tmp_path):
    (tmp_path / "b").mkdir()
    cv2.imwrite(str(tmp_path / "b" / "z.PNG"), np.full((20, 30, 3), 7, np.uint8))
    cv2.imwrite(str(tmp_path / "a.jpg"), np.full((20, 30, 3), 7, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG garbage")
    (tmp_path / "dir.png").mkdir()  # a folder that only looks like an image
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)] == ["a.jpg", "b/z.PNG", "broken.png"]
    assert [p.name for p in list_images(tmp_path, recursive=False)] == ["a.jpg", "broken.png"]
    assert is_image(tmp_path / "b" / "z.PNG") and not is_image(tmp_path / "notes.txt")
    assert read_image(tmp_path / "a.jpg").shape == (20, 30, 3)
    with pytest.raises(DatasetError, match=r"broken\.png: image cannot be read"):
        read_image(tmp_path / "broken.png")
    with pytest.raises(SourceError, match=r"missing\.png: image cannot be read"):
        read_image(tmp_path / "missing.png", SourceError)


def test_the_tensorrt_calibration_set_follows_the_one_rule(tmp_path):
    for i in range(9):
        cv2.imwrite(str(tmp_path / f"f{i}.png"), np.full((32, 32, 3), 10 * i, np.uint8))
    assert [p.name for p in engine_build.calibration_images(tmp_path, limit=3)] == ["f0.png", "f4.png", "f8.png"]
