"""Session fixtures for the backend tests (the exports are made once per test session)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tinyyolo import export_tiny_yolo, make_onnx_bundle


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory) -> Path:
    return export_tiny_yolo(tmp_path_factory.mktemp("tiny_yolo"))


@pytest.fixture(scope="session")
def tiny_bundle(tiny_onnx, tmp_path_factory) -> Path:
    return make_onnx_bundle(tiny_onnx, tmp_path_factory.mktemp("bundle") / "tiny")
