"""The Disagreements queue: parts where the live model and the shadow candidate disagree, reviewed
like any part; those reviews are the evidence `defectgate promote --evidence` counts."""

from __future__ import annotations

import sqlite3

import pytest

from qa_fixtures import make_shadow_archive
from defectgate_training.evidence_sources import reviewed_source
from defectgate_training.qa.archive_reader import ArchiveError, Filters
from defectgate_training.qa.decisions import Decision
from defectgate_training.qa.service import QAConfig, QAService


@pytest.fixture
def shadow_run(tmp_path):
    root = tmp_path / "station" / "archive"
    truth = make_shadow_archive(root, n=12)
    return root, truth


def _decision(live_ng: bool, truth_ng: bool) -> Decision:
    if live_ng:
        return Decision.CONFIRM_DEFECT if truth_ng else Decision.FALSE_REJECT
    return Decision.MISSED_DEFECT if truth_ng else Decision.CORRECT_PASS


def test_the_queue_holds_exactly_the_disagreements_each_with_an_image(shadow_run):
    root, truth = shadow_run
    svc = QAService(QAConfig(archive=root))
    rows, _ = svc.queue(Filters(queue="disagreements", verdict="all"), "unreviewed")
    expected = sorted(p for p, (_, live, cand) in truth.items() if live != cand)
    assert sorted(r.part_id for r in rows) == expected and expected
    for r in rows:
        view = svc.item(r.id)  # the image comes from the live row, or from the shadow row for a live OK part
        assert view.image_rgb.shape[:2] == (96, 128)
        assert "candidate `vcand` (shadow) says" in view.info_markdown() and "**disagrees**" in view.info_markdown()
        if r.verdict == "OK":  # the candidate's box is offered for a "missed defect"
            assert r.image_path is None and r.shadow.image_path and len(view.boxes) == 1
    with pytest.raises(ArchiveError, match="queue 'both'"):
        svc.queue(Filters(queue="both"), "all")


def test_reviews_of_disagreements_are_the_evidence_with_the_unreviewed_assumed_worst(shadow_run):
    root, truth = shadow_run
    svc = QAService(QAConfig(archive=root))
    rows, _ = svc.queue(Filters(queue="disagreements", verdict="all"), "unreviewed")
    held_back = next(r for r in rows if r.verdict == "NG")  # one the reviewer has not reached yet
    for r in rows:
        if r.id == held_back.id:
            continue
        t_ng = truth[r.part_id][0]
        boxes = [{"xmin": 10, "ymin": 10, "xmax": 40, "ymax": 40, "label": svc.classes[0]}] if t_ng else []
        svc.decide(r.id, _decision(r.verdict == "NG", t_ng), boxes, "qa-anna")
    ev = reviewed_source(root, None, current_version="vlive", candidate_version="vcand")
    reviewed = [truth[r.part_id] for r in rows if r.id != held_back.id]
    ng = [t for t in reviewed if t[0]]
    assert ng and ev.candidate.escapes > 1, "the fixture must hold escapes of the candidate to count"
    assert ev.candidate.ng_parts == len(ng) + 1  # + the unreviewed part the candidate would pass
    assert ev.current.escapes == sum(not live for _, live, _ in ng)
    assert ev.candidate.escapes == sum(not cand for _, _, cand in ng) + 1
    assert ev.detail["disagreements"] == len(rows) and ev.detail["unreviewed"] == 1
    assert ev.detail["unreviewed_counted_as_candidate_escapes"] == 1
    assert ev.detail["parts_judged_by_both"] == len(truth)
    other = reviewed_source(root, None, current_version="vlive", candidate_version="v-other")
    assert other.candidate.ng_parts == 0, "only the rows of this pair of versions count"


def test_an_archive_without_shadow_verdicts_says_so(shadow_run):
    root, _ = shadow_run
    with sqlite3.connect(root / "parts.sqlite") as conn:
        conn.execute("DROP TABLE shadow")  # an archive written before shadow mode existed
    svc = QAService(QAConfig(archive=root))
    assert svc.queue(Filters(verdict="all"), "all")[0]
    with pytest.raises(ArchiveError, match="no shadow verdicts"):
        svc.queue(Filters(queue="disagreements"), "all")
