"""Fixtures for the line tests: a real snap7 S7 server with a data block (helpers in line_helpers.py),
and the station tests' tiny YOLO bundle (tests/runtime/station_helpers.py) for station-level runs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from line_helpers import S7Server

# station_helpers (tests/runtime): one copy of the tiny bundle maker for both folders
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))
from station_helpers import _export_tiny_yolo, make_bundle  # noqa: E402


@pytest.fixture
def s7_server():
    pytest.importorskip("snap7", reason="needs the [line] extra (python-snap7)")
    srv = S7Server()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    onnx = _export_tiny_yolo(tmp_path_factory.mktemp("tiny_yolo_line"))
    return make_bundle(onnx, tmp_path_factory.mktemp("bundle_line") / "tiny")
