"""Archive reading, the review queue and decisions: the line's own rows are never written."""

from __future__ import annotations

import hashlib
import sqlite3

import pytest

from qa_fixtures import CLASS_NAMES
from defectgate.cli import main as cli_main
from defectgate_training.qa.archive_reader import ArchiveReader, Filters
from defectgate_training.qa.decisions import Decision
from defectgate_training.qa.errors import ArchiveError, PathEscapeError, QAError
from defectgate_training.qa.service import QAConfig, QAService


def _parts_digest(archive_dir) -> str:
    conn = sqlite3.connect(archive_dir / "parts.sqlite")
    rows = conn.execute("SELECT * FROM parts ORDER BY id").fetchall()
    conn.close()
    return hashlib.sha256(repr(rows).encode()).hexdigest()


def test_missing_and_non_archive_folders_have_clear_messages(tmp_path):
    with pytest.raises(ArchiveError, match="make demo"):
        ArchiveReader(tmp_path / "nowhere")
    with pytest.raises(ArchiveError, match="no parts.sqlite"):
        ArchiveReader(tmp_path)


def test_empty_archive_starts_with_a_message(tmp_path):
    from defectgate.archive import Archive

    Archive(tmp_path / "a", run_id="r", station="s", classes=CLASS_NAMES).close()
    svc = QAService(QAConfig(archive=tmp_path / "a"))
    assert "has no parts yet" in svc.archive.empty_message()
    rows, _ = svc.queue(Filters(verdict="all"), "all")
    assert rows == []


def test_cli_missing_archive_is_one_line_exit_2(tmp_path, capsys):
    rc = cli_main(["qa", "--archive", str(tmp_path / "missing"), "--check"])
    err = capsys.readouterr().err
    assert rc == 2 and "station archive folder not found" in err and len(err.strip().splitlines()) == 1


def test_cli_check_summarises(archive_dir, bundle_dir, capsys):
    assert cli_main(["qa", "--archive", str(archive_dir), "--bundle", str(bundle_dir), "--check"]) == 0
    assert "12 parts" in capsys.readouterr().out


def test_filters(archive_dir):
    r = ArchiveReader(archive_dir)
    everything = r.query(Filters(verdict="all"))
    ng = r.query(Filters(verdict="NG"))
    assert len(everything) == 12 and ng and all(p.verdict == "NG" for p in ng)
    assert all("crack" in p.classes for p in r.query(Filters(verdict="all", cls="crack")))
    low = r.query(Filters(verdict="NG", max_conf=0.6))
    assert low and all(p.max_confidence <= 0.6 for p in low)
    assert r.query(Filters(verdict="all", model_version="other")) == []
    day = everything[0].ts_utc[:10]
    assert len(r.query(Filters(verdict="all", since=day, until=day))) == 12
    assert r.query(Filters(verdict="all", until="2000-01-01")) == []


def test_tampered_image_path_cannot_escape_the_archive(archive_dir):
    conn = sqlite3.connect(archive_dir / "parts.sqlite")
    conn.execute("UPDATE parts SET image_path = '../../../../etc/passwd' WHERE id = 1")
    conn.commit()
    conn.close()
    r = ArchiveReader(archive_dir)
    with pytest.raises(PathEscapeError):
        r.image_file(r.get(1))


def test_decisions_are_stored_with_who_and_when_and_parts_untouched(archive_dir, bundle_dir):
    before = _parts_digest(archive_dir)
    svc = QAService(QAConfig(archive=archive_dir, bundle=bundle_dir))
    rows, _ = svc.queue(Filters(verdict="NG"), "unreviewed")
    first, second = rows[0], rows[1]
    view = svc.item(first.id)
    assert view.image_rgb.shape == (96, 128, 3) and len(view.boxes) == len(first.detections)
    svc.decide(first.id, Decision.FALSE_REJECT, view.boxes, "alice")
    moved = [dict(b, xmin=b["xmin"] + 5, xmax=b["xmax"] + 5) for b in svc.item(second.id).boxes]
    rev = svc.decide(second.id, Decision.CONFIRM_DEFECT, moved, "bob")
    assert rev.boxes[0]["xyxy"][0] == pytest.approx(moved[0]["xmin"])
    latest = svc.store.latest()
    assert latest[first.id].decision is Decision.FALSE_REJECT and latest[first.id].reviewer == "alice"
    assert latest[first.id].boxes == [] and latest[first.id].ts_utc
    # the queue of unreviewed parts no longer holds them; re-deciding appends history
    remaining, _ = svc.queue(Filters(verdict="NG"), "unreviewed")
    assert first.id not in [p.id for p in remaining]
    svc.decide(first.id, Decision.CONFIRM_DEFECT, view.boxes, "carol")
    assert [r.decision for r in svc.store.history(first.id)] == [Decision.FALSE_REJECT, Decision.CONFIRM_DEFECT]
    assert _parts_digest(archive_dir) == before


def test_decisions_that_contradict_the_line_or_lack_boxes_are_refused(archive_dir):
    svc = QAService(QAConfig(archive=archive_dir))
    ng = svc.queue(Filters(verdict="NG"), "all")[0][0]
    ok = svc.queue(Filters(verdict="OK"), "all")[0][0]
    with pytest.raises(QAError, match="use 'Missed defect' or 'Correct pass'"):
        svc.decide(ok.id, Decision.FALSE_REJECT, [], "alice")
    with pytest.raises(QAError, match="needs at least one box"):
        svc.decide(ok.id, Decision.MISSED_DEFECT, [], "alice")
    with pytest.raises(QAError, match="not a class"):
        svc.decide(ng.id, Decision.CONFIRM_DEFECT, [{"xmin": 1, "ymin": 1, "xmax": 9, "ymax": 9, "label": "rust"}],
                   "alice")
    with pytest.raises(QAError, match="reviewer name is empty"):
        svc.decide(ng.id, Decision.FALSE_REJECT, [], "  ")
    assert svc.store.latest() == {}


def test_bundle_with_other_classes_is_refused(archive_dir, tmp_path):
    from qa_fixtures import make_bundle
    from defectgate.bundle import read_sidecar, write_sidecar

    b = make_bundle(tmp_path / "b")
    sc = read_sidecar(b / "model.json").model_copy(update={"classes": ["a", "b", "c", "d"]})
    write_sidecar(b, sc)
    with pytest.raises(QAError, match="pass the bundle the station ran"):
        QAService(QAConfig(archive=archive_dir, bundle=b))


def test_rotated_editor_view_is_refused():
    from defectgate_training.qa.boxes import annotator_value_boxes

    box = {"xmin": 1, "ymin": 2, "xmax": 3, "ymax": 4, "label": "dent"}
    assert annotator_value_boxes({"boxes": [box], "orientation": 0}) == [box]
    assert annotator_value_boxes(None) == []
    with pytest.raises(QAError, match="rotate it back"):
        annotator_value_boxes({"boxes": [box], "orientation": 1})


def test_time_filters_accept_people_formats_and_reject_nonsense(archive_dir):
    r = ArchiveReader(archive_dir)
    day = r.all_rows()[0].ts_utc[:10]
    assert len(r.query(Filters(verdict="all", since=f"{day} 00:00", until=f"{day}T23:59:59+00:00"))) == 12
    with pytest.raises(ArchiveError, match="not a date or time"):
        r.query(Filters(verdict="all", since="yesterday"))


def test_unreviewed_queue_is_not_starved_by_the_limit(archive_dir):
    svc = QAService(QAConfig(archive=archive_dir))
    ng, _ = svc.queue(Filters(verdict="NG"), "all")
    for p in ng[:3]:
        svc.decide(p.id, Decision.FALSE_REJECT, [], "a")
    rows, _ = svc.queue(Filters(verdict="NG", limit=2), "unreviewed")
    assert [p.id for p in rows] == [p.id for p in ng[3:5]]
    reviewed, _ = svc.queue(Filters(verdict="NG", limit=10), "reviewed")
    assert [p.id for p in reviewed] == [p.id for p in ng[:3]]
