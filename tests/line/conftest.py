"""Fixtures for the line tests: a real snap7 S7 server with a data block (helpers in line_helpers.py)."""

from __future__ import annotations

import pytest

from line_helpers import S7Server


@pytest.fixture
def s7_server():
    pytest.importorskip("snap7", reason="needs the [line] extra (python-snap7)")
    srv = S7Server()
    yield srv
    srv.stop()
