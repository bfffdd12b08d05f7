"""The part score: its features, the decision it makes in place of "any box", what it names an NG part
by, the config that may move its threshold, and the sidecars the runtime refuses."""

from __future__ import annotations

import json

import numpy as np
import pytest

from defectgate.bundle import read_sidecar
from defectgate.config import load_config
from defectgate.decision import build_decision
from defectgate.errors import BundleError, ConfigError
from defectgate.partscore import PartScore, feature_names, part_features, part_score_of
from defectgate.types import Detections, Outcome

NAMES = ["scratch", "dent", "crack"]


def dets(boxes, conf, cls):
    return Detections(np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(conf, np.float32), np.asarray(cls))


def score(weights: dict, bias: float, threshold: float = 0.5, floor: float = 0.05) -> PartScore:
    names = feature_names(NAMES)
    return PartScore(tuple(NAMES), tuple(names), np.array([weights.get(n, 0.0) for n in names]), bias, threshold, floor)


def test_features_read_the_best_box_of_each_class_the_runner_up_count_and_areas():
    d = dets([[0, 0, 10, 10], [0, 0, 50, 20], [5, 5, 15, 25]], [0.3, 0.8, 0.6], [0, 0, 2])
    f = part_features(d, (100, 200), NAMES)
    assert f == pytest.approx({"top:scratch": 0.8, "top:dent": 0.0, "top:crack": 0.6, "second": 0.6,
                               "count": np.log1p(3), "area_top": 1000 / 20000, "area_max": 1000 / 20000})
    empty = part_features(Detections.empty(), (100, 200), NAMES)
    assert set(empty.values()) == {0.0} and list(empty) == feature_names(NAMES)


def test_one_faint_box_passes_where_any_box_rejects_and_two_agreeing_boxes_reject():
    # "any box" at 0.3 rejects a part for one scratch at 0.35; a score that wants corroboration does not
    ps = score({"top:scratch": 4.0, "top:crack": 4.0, "second": 6.0}, bias=-4.0)
    one = dets([[10, 10, 20, 20]], [0.35], [0])
    two = dets([[10, 10, 20, 20], [30, 30, 60, 40]], [0.35, 0.5], [0, 2])
    any_box = build_decision(NAMES, 0.3, {}, {})
    by_score = build_decision(NAMES, 0.3, {}, {}, part_score=ps)
    assert any_box(one, (100, 100))[0] is Outcome.NG
    outcome, reasons, kept = by_score(one, (100, 100))
    assert outcome is Outcome.OK and reasons == [] and len(kept) == 0
    outcome, reasons, kept = by_score(two, (100, 100))
    assert outcome is Outcome.NG and reasons == ["crack"], "named by the class whose top box adds most"
    assert kept.class_id.tolist() == [2]


def test_the_score_sees_only_boxes_that_survive_the_spatial_rules_and_the_floor():
    ps = score({"top:scratch": 10.0}, bias=-5.0, floor=0.2)  # NG from a scratch at 0.5 up
    inside = dets([[10, 10, 20, 20]], [0.9], [0])
    roi = [(0.5, 0.5), (1, 0.5), (1, 1), (0.5, 1)]  # the box's centre (15, 15) is outside
    assert build_decision(NAMES, 0.3, {}, {}, part_score=ps)(inside, (100, 100))[0] is Outcome.NG
    assert build_decision(NAMES, 0.3, {}, {}, roi=roi, part_score=ps)(inside, (100, 100))[0] is Outcome.OK
    d = build_decision(NAMES, 0.3, {}, {}, part_score=ps)
    assert d.confidence_floor == pytest.approx(0.2), "decode need produce nothing below the score's floor"
    faint = dets([[10, 10, 20, 20]] * 2, [0.15, 0.9], [0, 1])  # the scratch is below the floor
    assert d.keep(faint, (100, 100)).tolist() == [False, True]


def test_the_config_may_move_the_threshold_but_not_mix_in_class_thresholds():
    ps = score({"top:scratch": 10.0}, bias=-5.0, threshold=0.9)  # 0.6 scratch -> score 0.73
    part = dets([[10, 10, 20, 20]], [0.6], [0])
    assert build_decision(NAMES, 0.3, {}, {}, part_score=ps)(part, (100, 100))[0] is Outcome.OK
    assert build_decision(NAMES, 0.3, {}, {}, part_score=ps, part_threshold=0.7)(part, (100, 100))[0] is Outcome.NG
    with pytest.raises(ConfigError, match=r"decision.thresholds .*part score .*part_threshold"):
        build_decision(NAMES, 0.3, {}, {"dent": 0.5}, part_score=ps)
    with pytest.raises(ConfigError, match=r"decision.part_threshold 0.7: this bundle declares no part score"):
        build_decision(NAMES, 0.3, {}, {}, part_threshold=0.7)


def test_station_config_checks_the_part_threshold(tmp_path):
    bad = tmp_path / "station.yaml"
    bad.write_text("model: {bundle: b}\ndecision: {part_threshold: 1.5}\n")
    with pytest.raises(ConfigError, match="part_threshold"):
        load_config(bad)


def _sidecar_with(tiny_bundle, tmp_path, part_score):
    raw = json.loads((tiny_bundle / "model.json").read_text())
    raw["part_score"] = part_score
    path = tmp_path / "model.json"
    path.write_text(json.dumps(raw))
    return path


def test_a_sidecar_part_score_must_fit_the_models_classes(tiny_bundle, tmp_path):
    classes = read_sidecar(tiny_bundle / "model.json").classes
    names = feature_names(classes)
    good = {"features": names, "weights": [1.0] * len(names), "bias": -1.0, "threshold": 0.5}
    side = read_sidecar(_sidecar_with(tiny_bundle, tmp_path, good))
    assert part_score_of(side.part_score, side.classes).features == tuple(names)
    other = good | {"features": names[:-1] + ["top:rust"]}
    with pytest.raises(BundleError, match=r"part_score.features \['top:rust'\] are not features of a model"):
        read_sidecar(_sidecar_with(tiny_bundle, tmp_path, other))
    short = good | {"weights": [1.0]}
    with pytest.raises(BundleError, match=rf"sidecar key 'part_score': .*1 weights for {len(names)} features"):
        read_sidecar(_sidecar_with(tiny_bundle, tmp_path, short))
    with pytest.raises(BundleError, match=r"part_score.threshold"):
        read_sidecar(_sidecar_with(tiny_bundle, tmp_path, good | {"threshold": 2.0}))
