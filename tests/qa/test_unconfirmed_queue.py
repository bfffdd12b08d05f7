"""The Unconfirmed rejects queue: parts the line fired a reject for but whose confirm sensor did not
see them leave (the archive's line_events, schema 2); and archives of schema 1 still open."""

from __future__ import annotations

import sqlite3

import pytest

from qa_fixtures import make_archive
from defectgate.archive import SCHEMA_VERSION, Archive
from defectgate.errors import ConfigError
from defectgate_training.qa.archive_reader import ArchiveError, Filters
from defectgate_training.qa.service import QAConfig, QAService
from defectgate_training.qa.ui import QUEUE_CHOICES


def _line_events(root, run_id, events):
    arch = Archive(root, run_id=run_id, station="line1", classes=["scratch"])
    for part, kind in events:
        arch.record_line_event(part, 1000 + part, kind, "no confirm within 250 ms of the pulse", float(part))
    arch.close()


def _schema(root, version: int | None = None, drop_line_events: bool = False) -> str:
    conn = sqlite3.connect(root / "parts.sqlite")
    with conn:
        if drop_line_events:
            conn.execute("DROP TABLE line_events")
        if version is not None:
            conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))
    value = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
    conn.close()
    return value


def test_the_queue_holds_exactly_the_unconfirmed_rejects_of_their_own_run(tmp_path):
    root = make_archive(tmp_path / "archive", n=12)
    svc = QAService(QAConfig(archive=root))
    ng = sorted(r.part_id for r in svc.queue(Filters(verdict="NG"), "all")[0])
    assert len(ng) >= 3
    unconfirmed, confirmed, other_run = ng[0], ng[1], ng[2]
    _line_events(root, "run1", [(unconfirmed, "reject_unconfirmed"), (confirmed, "reject_confirmed"),
                                (ng[2], "delivered")])
    _line_events(root, "run2", [(other_run, "reject_unconfirmed")])  # same part number, another run
    rows, _ = svc.queue(Filters(queue="unconfirmed"), "unreviewed")
    assert [r.part_id for r in rows] == [unconfirmed]
    assert svc.item(rows[0].id).image_rgb.shape[:2] == (96, 128), "reviewed like any reject"
    assert QUEUE_CHOICES["Unconfirmed rejects (line)"] == "unconfirmed"


def test_an_archive_of_schema_1_still_opens_and_says_why_it_has_no_unconfirmed_queue(tmp_path):
    root = make_archive(tmp_path / "archive", n=6)
    assert _schema(root, version=1, drop_line_events=True) == "1"
    svc = QAService(QAConfig(archive=root))
    assert len(svc.queue(Filters(verdict="all"), "all")[0]) == 6, "the old archive reads as before"
    with pytest.raises(ArchiveError, match="no line events in this archive"):
        svc.queue(Filters(queue="unconfirmed"), "all")
    _line_events(root, "run3", [(1, "reject_unconfirmed")])  # a station of schema 2 writes into it
    assert _schema(root) == str(SCHEMA_VERSION) == "2"
    assert svc.archive.count() == 6


def test_a_station_refuses_an_archive_written_by_a_newer_one(tmp_path):
    root = make_archive(tmp_path / "archive", n=2)
    _schema(root, version=SCHEMA_VERSION + 1)
    with pytest.raises(ConfigError, match=r"parts.sqlite: archive schema 3 is newer than this station's \(2\)"):
        Archive(root, run_id="run9", station="line1", classes=["scratch"])
