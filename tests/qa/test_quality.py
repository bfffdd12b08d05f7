"""Quality views: shifts, reject reasons, false-reject rate, escapes, confusion, charts."""

from __future__ import annotations

import numpy as np
import pytest

from defectgate_training.qa import charts
from defectgate_training.qa.archive_reader import Filters
from defectgate_training.qa.decisions import Decision
from defectgate_training.qa.errors import QAError
from defectgate_training.qa.quality import Shifts, match_boxes, reason_key
from defectgate_training.qa.service import QAConfig, QAService


def test_shifts_in_local_time_and_night_shift_belongs_to_its_start_day():
    s = Shifts((6, 14, 22), "UTC")
    assert s.names() == ["A 06-14h", "B 14-22h", "C 22-06h"]
    assert s.of("2026-11-24T06:00:00.000+00:00") == ("2026-11-24", "A 06-14h")
    assert s.of("2026-11-24T21:59:00+00:00") == ("2026-11-24", "B 14-22h")
    assert s.of("2026-11-24T23:30:00+00:00") == ("2026-11-24", "C 22-06h")
    assert s.of("2026-11-25T03:00:00+00:00") == ("2026-11-24", "C 22-06h")
    berlin = Shifts((6, 14, 22), "Europe/Berlin")  # UTC+1 in November
    assert berlin.of("2026-11-24T05:30:00+00:00") == ("2026-11-24", "A 06-14h")
    with pytest.raises(QAError, match="time zone"):
        Shifts((6,), "Mars/Olympus")
    with pytest.raises(QAError, match="distinct hours"):
        Shifts((6, 6))


def test_reason_key_groups_thresholds():
    assert reason_key("scratch>=0.41") == "scratch"
    assert reason_key("deadline_missed") == "deadline_missed"


def test_box_matching_pairs_classes_and_unmatched():
    model = [{"xyxy": [0, 0, 10, 10], "class": "dent", "confidence": 0.9},
             {"xyxy": [50, 50, 60, 60], "class": "stain", "confidence": 0.5}]
    reviewer = [{"xyxy": [1, 1, 10, 10], "class": "crack"}, {"xyxy": [80, 80, 90, 90], "class": "dent"}]
    assert sorted(match_boxes(model, reviewer)) == sorted([("dent", "crack"), ("stain", "(none)"), ("(none)", "dent")])


def test_report_rates_and_confusion(archive_dir):
    svc = QAService(QAConfig(archive=archive_dir))
    rep0 = svc.quality()
    assert rep0.parts == 12 and rep0.false_reject_rate is None and sum(rep0.reasons.values()) >= rep0.ng
    ng = svc.queue(Filters(verdict="NG"), "all")[0]
    ok = svc.queue(Filters(verdict="OK"), "all")[0]
    svc.decide(ng[0].id, Decision.FALSE_REJECT, [], "a")
    svc.decide(ng[1].id, Decision.CONFIRM_DEFECT, svc.item(ng[1].id).boxes, "a")
    svc.decide(ng[2].id, Decision.CONFIRM_DEFECT, svc.item(ng[2].id).boxes, "a")
    svc.decide(ng[3].id, Decision.CONFIRM_DEFECT, svc.item(ng[3].id).boxes, "a")
    svc.decide(ok[0].id, Decision.MISSED_DEFECT, [{"xmin": 5, "ymin": 5, "xmax": 30, "ymax": 30, "label": "dent"}], "b")
    svc.decide(ok[1].id, Decision.CORRECT_PASS, [], "b")
    rep = svc.quality()
    assert rep.reviewed_ng == 4 and rep.false_rejects == 1 and rep.false_reject_rate == pytest.approx(0.25)
    assert rep.confirmed_escapes == 1 and rep.escape_rate_reviewed == pytest.approx(0.5)
    assert rep.confusion == {"NG": {"NG": 3, "OK": 1}, "OK": {"NG": 1, "OK": 1}}
    labels = rep.class_labels
    m = np.array(rep.class_confusion)
    assert m[labels.index("(none)"), labels.index("dent")] == 1  # the missed dent
    assert m.sum() > 0 and np.trace(m) >= 1  # confirmed boxes kept their class
    day, shift, reasons, conf = svc.quality_charts(rep)
    for img in (day, shift, reasons, conf):
        assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8 and img.std() > 5
    rows = dict((k, v) for k, v in rep.summary_rows())
    assert rows["false-reject rate (reviewed rejects)"] == "25.0 %"


def test_charts_for_an_empty_archive_still_render():
    from defectgate_training.qa.quality import QualityReport

    rep = QualityReport()
    assert charts.counts_chart({}, "Parts per day").shape[2] == 3
    assert charts.reasons_chart({}).shape[2] == 3
    assert charts.confusion_chart(rep).shape[2] == 3
