"""Session fixtures for the station tests: the tiny YOLO11n exported once to ONNX and wrapped in a
real bundle (helpers in station_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from station_helpers import _export_tiny_yolo, make_bundle


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory) -> Path:
    return _export_tiny_yolo(tmp_path_factory.mktemp("tiny_yolo"))


@pytest.fixture(scope="session")
def tiny_bundle(tiny_onnx, tmp_path_factory) -> Path:
    return make_bundle(tiny_onnx, tmp_path_factory.mktemp("bundle") / "tiny")
