"""Fixtures for the QA app tests (the data builders live in qa_fixtures.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from qa_fixtures import make_archive, make_bundle


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("qa_bundle") / "bundle")


@pytest.fixture(scope="session")
def archive_template(tmp_path_factory) -> Path:
    return make_archive(tmp_path_factory.mktemp("qa_archive_tpl") / "archive")


@pytest.fixture
def archive_dir(archive_template, tmp_path) -> Path:
    """A private copy per test: reviews and exports are written next to it."""
    dst = tmp_path / "station" / "archive"
    shutil.copytree(archive_template, dst)
    return dst
