"""Fitting the part score: the threshold meets the escape budget, it throws away fewer good parts than
"any box" where single spurious boxes are what rejects them, it refuses splits it cannot fit on, and a
bundle that declares one is judged alike by evaluate, the station and the QA pre-labels."""

from __future__ import annotations

import json

import numpy as np
import pytest

from defectgate.bundle import PartScoreSpec, load_bundle, read_sidecar, write_sidecar
from defectgate.clock import FakeClock
from defectgate.decision import build_decision
from defectgate.detector import Detector
from defectgate.images import read_image
from defectgate.inspector import Inspector
from defectgate.partscore import feature_names, part_score_of
from defectgate.types import Detections, Frame, Outcome
from defectgate_training import evaluate as ev
from defectgate_training import partscore_fit as pf
from defectgate_training.datayaml import load_data_yaml, split_images

NAMES = ["scratch", "dent"]
SPLIT = "train"  # the synthetic set's larger split: 19 parts


def part(ng: bool, rng) -> ev.ImageResult:
    """NG parts: a box of the true class plus, mostly, a second one over it (the detector sees a real
    defect from several anchors); OK parts: one spurious box as confident as a real one, sometimes."""
    cls = int(rng.integers(0, 2))
    if ng:
        conf = [rng.uniform(0.3, 0.9)] + ([rng.uniform(0.2, 0.6)] if rng.random() < 0.99 else [])
    else:
        conf = [rng.uniform(0.3, 0.8)] if rng.random() < 0.7 else []
    boxes = np.array([[10, 10, 40, 30]] * len(conf), np.float32).reshape(-1, 4)
    det = Detections(boxes, np.array(conf, np.float32), np.full(len(conf), cls, np.int64))
    gt = np.array([[10, 10, 40, 30]], np.float32) if ng else np.zeros((0, 4), np.float32)
    return ev.ImageResult("x.png", gt, np.array([cls] if ng else [], np.int64), det, (100, 100))


def parts(n_ng: int, n_ok: int, seed: int) -> list[ev.ImageResult]:
    rng = np.random.default_rng(seed)
    return [part(True, rng) for _ in range(n_ng)] + [part(False, rng) for _ in range(n_ok)]


def test_escape_threshold_lets_through_what_holds_the_budget_on_new_parts():
    s = np.arange(1, 101) / 100.0  # 100 NG parts scoring 0.01 .. 1.00
    t = pf.escape_threshold(s, 0.02)  # floor(0.02 x 101) - 1 = 1 part may score below it (evidence.py)
    assert (s < t).sum() == 1 and t == pytest.approx(0.02)
    assert pf.escape_threshold(s, 0.05) == pytest.approx(0.05)  # 4 below: 5/101 <= 5 %
    assert pf.escape_threshold(s, 0.0) == pytest.approx(0.01)


def test_matched_escape_compares_the_decisions_where_both_let_the_same_ng_parts_through():
    ng = np.array([True] * 5 + [False] * 4)
    # NG parts score 0.2 .. 0.9 on both; the OK parts are confident spurious boxes for "a", faint for "b"
    a = np.array([0.2, 0.4, 0.5, 0.7, 0.9, 0.8, 0.6, 0.45, 0.1])
    b = np.array([0.2, 0.4, 0.5, 0.7, 0.9, 0.3, 0.1, 0.1, 0.0])
    rows = pf.at_matched_escape({"a": a, "b": b}, ng, [1, 0, 1])
    assert [r["escapes_allowed"] for r in rows] == [0, 1]
    zero, one = rows
    assert zero["a"]["escapes"] == zero["b"]["escapes"] == 0 and zero["a"]["threshold"] == pytest.approx(0.2)
    assert (zero["a"]["overkills"], zero["b"]["overkills"]) == (3, 1)
    assert (one["a"]["escapes"], one["a"]["overkills"], one["b"]["overkills"]) == (1, 3, 0)
    assert one["escape_rate_max"] == 0.2 and one["a"]["overkill_rate"] == 0.75


def test_the_part_score_halves_overkill_where_single_spurious_boxes_reject_good_parts():
    calib, hold = parts(200, 120, seed=1), parts(200, 120, seed=2)
    ng = np.array([len(r.gt_cls) > 0 for r in hold])
    thresholds = ev.calibrate(calib, NAMES, 0.02, 0.25)
    any_box = ev.part_rates(ev.part_scores(hold, 2), ng, np.array([thresholds[n] for n in NAMES]))
    decided = pf.part_score_decision(hold, calib, NAMES, 0.02, None, True, "calib")
    by_score = decided["parts"]
    assert by_score["escape_rate"] <= 0.05, by_score  # 2 % on the calibration half, a few parts more here
    assert by_score["overkill_rate"] <= any_box["overkill_rate"] / 2, (by_score, any_box)
    spec = decided["spec"]
    assert spec["features"] == feature_names(NAMES) and spec["fitted_on"] == "calib"
    # the sweep is the same decision at other thresholds: at the calibrated one it gives the same counts
    sweep = decided["sweep"]
    i = int(np.argmin(np.abs(np.array(sweep["threshold"]) - spec["threshold"])))
    assert sweep["escape_rate"][i] == pytest.approx(by_score["escape_rate"], abs=0.03)


def test_fitting_refuses_a_split_without_enough_ok_parts():
    with pytest.raises(pf.PartScoreError, match=r"val-calib: 50 NG and 2 OK parts; .* `defectgate data okparts`"):
        pf.fit_part_score(parts(50, 2, seed=3), NAMES, 0.02, "val-calib")
    with pytest.raises(pf.PartScoreError, match="drop --no-calibrate"):
        pf.part_score_decision(parts(50, 20, seed=3), parts(50, 20, seed=4), NAMES, None, None, True, "x")


def test_logistic_fit_orders_a_separable_feature():
    x = np.linspace(0, 1, 40)[:, None]
    y = (x[:, 0] > 0.5).astype(float)
    w, b = pf.fit_logistic(x, y)
    p = 1 / (1 + np.exp(-(x @ w + b)))
    assert w[0] > 0 and (p[y > 0] > 0.5).all() and (p[y == 0] < 0.5).all()


# ---------------------------------------------------------------- one decision, three readers
def _with_part_score(synth_data, tmp_path):
    """A bundle of an untrained YOLO11n whose scores vary with the image (tinyyolo), for the synthetic
    classes, with a part score whose threshold splits the train parts, declared as export writes it."""
    from tinyyolo import export_tiny_yolo, make_onnx_bundle

    names = load_data_yaml(synth_data).names
    root = make_onnx_bundle(export_tiny_yolo(tmp_path, classes=names), tmp_path / "scored", names)
    detector = ev.open_detector(root, "onnxruntime")[0]
    results, _ = ev.collect(detector, synth_data, SPLIT)
    detector.close()
    spec = {"features": feature_names(names), "weights": [8.0] * len(names) + [4.0, 1.0, 0.0, 0.0], "bias": -4.0,
            "threshold": 0.5, "box_floor": 0.001, "fitted_on": "test"}  # an untrained model scores low
    values = pf.part_score_values(results, names, pf.score_of(spec, names))
    v = np.unique(values)
    assert len(v) >= 4, f"the test model gives the parts {values}: nothing to split"
    spec["threshold"] = float((v[len(v) // 2 - 1] + v[len(v) // 2]) / 2)  # between two parts' scores
    write_sidecar(root, read_sidecar(root / "model.json").model_copy(update={"part_score": PartScoreSpec(**spec)}))
    return root


def test_evaluate_the_station_and_the_prelabels_decide_alike(synth_data, tmp_path):
    from defectgate_training.qa.prelabel import Prelabeler

    root = _with_part_score(synth_data, tmp_path)
    report = ev.evaluate_model(root, synth_data, SPLIT, target_escape=None, backend="onnxruntime")
    assert report["decision"] == "part_score" and report["part_score"]["fitted_on"] == "test"
    side = load_bundle(root).sidecar
    decision = build_decision(side.classes, side.conf_threshold, side.class_thresholds, {},
                              part_score=part_score_of(side.part_score, side.classes))
    inspector = Inspector(Detector(load_bundle(root), backend_name="onnxruntime", threads=1,
                                   conf_floor=decision.confidence_floor), decision, FakeClock())
    labeler = Prelabeler(root)
    rejected = set()
    try:
        for k, path in enumerate(split_images(load_data_yaml(synth_data), SPLIT)):
            image = read_image(path)
            verdict = inspector.step(Frame(image=image, t_capture=0.0, seq=k))
            if verdict.outcome is Outcome.NG:
                rejected.add(str(path))
            assert bool(labeler.predict(image)) == (verdict.outcome is Outcome.NG), path
    finally:
        inspector.close()
        labeler.close()
    assert 0 < len(rejected) < report["images"], "the threshold splits the parts, so agreement means something"
    json.dumps(report)  # the report is what `evaluate --json` writes
    own = next(m for m in report["matched_escape"] if m["escapes_allowed"] == report["parts"]["escapes"])
    assert own["part_score"]["escapes"] <= report["parts"]["escapes"] and \
        own["part_score"]["overkills"] <= report["parts"]["overkills"], "the curve's best at the same escape"
    assert set(report["overkill_images"]) <= rejected and not set(report["escape_images"]) & rejected
    assert report["parts"]["overkills"] + report["parts"]["ng_parts"] - report["parts"]["escapes"] == len(rejected)


def test_export_refuses_a_part_score_it_cannot_fit_and_writes_nothing(trained, synth_data, tmp_path):
    from defectgate.errors import ConfigError
    from defectgate_training.export import export_bundle

    with pytest.raises(ConfigError, match="--part-score is fitted on --data's val split"):
        export_bundle(trained.best, tmp_path / "a", None, part_score=True)
    assert not (tmp_path / "a").exists()
    # the session's synthetic val split has 5 parts: too few OK ones to fit a score on (the label is what
    # the sidecar would record as fitted_on: the split, without the report's "(the reported split itself)")
    with pytest.raises(pf.PartScoreError, match=r"synth/data.yaml:val: \d+ NG and \d+ OK parts; a part score needs"):
        export_bundle(trained.best, tmp_path / "b", str(synth_data), parity_images=2, part_score=True)
    assert not (tmp_path / "b").exists() and not list(tmp_path.glob(".b*")), "nothing written half-way"


def test_the_decision_bench_times_the_part_score_against_any_box_on_the_same_frames(synth_data, tmp_path):
    from defectgate.bench_decision import bench_decision
    from defectgate.errors import BundleError
    from defectgate.images import list_images

    root = _with_part_score(synth_data, tmp_path)
    paths = split_images(load_data_yaml(synth_data), SPLIT)
    folder = paths[0].parent
    assert len(list_images(folder)) == len(paths)
    r = bench_decision(root, folder, frames=len(paths), rounds=1, threads=1)
    report = ev.evaluate_model(root, synth_data, SPLIT, target_escape=None, backend="onnxruntime")
    # each inspector decided as its bundle says: the part score's rejects, and any box's at the class thresholds
    assert r["ng_frames"]["part_score"] == report["parts"]["overkills"] + report["parts"]["ng_parts"] - report["parts"]["escapes"]
    ab = report["any_box"]
    assert r["ng_frames"]["any_box"] == ab["overkills"] + ab["ng_parts"] - ab["escapes"]
    assert r["frames"] == len(paths) and r["ratio"] > 0 and "Model name" in r["machine"]
    write_sidecar(root, read_sidecar(root / "model.json").model_copy(update={"part_score": None}))
    with pytest.raises(BundleError, match="model.json: declares no part_score"):
        bench_decision(root, folder, frames=2, rounds=1)
