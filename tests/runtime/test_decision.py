import numpy as np
import pytest

from defectgate.decision import build_decision
from defectgate.errors import ConfigError
from defectgate.types import Detections, Outcome

NAMES = ["scratch", "dent", "crack"]


def dets():
    return Detections(
        np.array([[10, 10, 20, 20], [80, 80, 90, 90], [40, 40, 42, 42], [50, 50, 60, 60]], np.float32),
        np.array([0.5, 0.9, 0.9, 0.3], np.float32), np.array([0, 1, 2, 0]))


def test_per_class_thresholds_from_bundle_and_config():
    d = build_decision(NAMES, 0.25, {"scratch": 0.6}, thresholds={"dent": 0.95})
    mask = d.keep(dets(), (100, 100))
    assert mask.tolist() == [False, False, True, False]


def test_roi_polygon_excludes_detections_outside():
    d = build_decision(NAMES, 0.25, {}, {}, roi=[(0, 0), (0.7, 0), (0.7, 0.7), (0, 0.7)])
    assert d.keep(dets(), (100, 100)).tolist() == [True, False, True, True]


def test_min_area_and_ignored_classes():
    d = build_decision(NAMES, 0.25, {}, {}, min_area_px=50, ignore_classes=["dent"])
    assert d.keep(dets(), (100, 100)).tolist() == [True, False, False, True]


def test_verdict_ng_with_reasons_and_ok_when_nothing_survives():
    d = build_decision(NAMES, 0.25, {}, {})
    outcome, reasons, kept = d(dets(), (100, 100))
    assert outcome is Outcome.NG and reasons == ["crack", "dent", "scratch"] and len(kept) == 4
    strict = build_decision(NAMES, 0.99, {}, {})
    outcome, reasons, kept = strict(dets(), (100, 100))
    assert outcome is Outcome.OK and reasons == [] and len(kept) == 0


def test_unknown_class_in_config_names_the_class():
    with pytest.raises(ConfigError, match="'scrach'"):
        build_decision(NAMES, 0.25, {}, {"scrach": 0.5})


def test_confidence_floor_is_the_lowest_class_threshold_in_force():
    d = build_decision(NAMES, 0.25, {"scratch": 0.6}, thresholds={"dent": 0.15})
    assert d.confidence_floor == pytest.approx(0.15)  # crack keeps the bundle default 0.25
    from defectgate.decision import Decision

    assert Decision([]).confidence_floor == 0.0  # no threshold rule: decode everything
