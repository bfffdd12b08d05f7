"""Evaluation: metric arithmetic on hand-made results, calibration, and the same numbers from an
ONNX bundle (through the runtime) and from its .pt."""

from __future__ import annotations

import json

import numpy as np
import pytest

from defectgate.types import Detections
from defectgate_training import evaluate as ev
from defectgate_training.evidence import escapes_allowed

NAMES = ["scratch", "dent"]


def R(gt, gt_cls, det=(), conf=(), cls=()):
    return ev.ImageResult("x.png", np.asarray(gt, np.float32).reshape(-1, 4), np.asarray(gt_cls, np.int64),
                          Detections(np.asarray(det, np.float32).reshape(-1, 4), np.asarray(conf, np.float32),
                                     np.asarray(cls, np.int64)))


def test_perfect_detections_give_map_one_and_no_escapes():
    results = [R([[0, 0, 10, 10]], [0], [[0, 0, 10, 10]], [0.9], [0]),
               R([[5, 5, 20, 20]], [1], [[5, 5, 20, 20]], [0.8], [1]),
               R([], [])]  # an OK part with no detection
    box, _ = ev.box_metrics(results, NAMES, {"scratch": 0.5, "dent": 0.5})
    # 101-point interpolation ends at (recall 1, precision 0): a perfect class scores 0.995, as in ultralytics
    assert box["map50"] == pytest.approx(0.995, abs=1e-3) and box["map50_95"] == pytest.approx(0.995, abs=1e-3)
    rates = ev.part_rates(ev.part_scores(results, 2), np.array([True, True, False]), np.array([0.5, 0.5]))
    assert {k: v for k, v in rates.items() if not k.endswith(("_ci95", "_upper95"))} == {
        "parts": 3, "ng_parts": 2, "ok_parts": 1, "escapes": 0, "overkills": 0, "escape_rate": 0.0, "overkill_rate": 0.0}
    assert rates["escape_rate_ci95"][0] == 0.0 and rates["escape_rate_ci95"][1] > 0.5  # 0 of 2 proves little
    assert rates["escape_rate_upper95"] == pytest.approx(1 - 0.05 ** 0.5, abs=1e-4)  # 0 of 2: escape <= 78 %


def test_rates_carry_a_95_percent_interval_that_narrows_with_more_parts():
    # 0 escapes among 179 NG parts (docs/accuracy.md's hold-out half): up to ~2 % is still plausible
    assert ev.wilson_interval(0, 179) == pytest.approx([0.0, 0.021], abs=5e-4)
    lo, hi = ev.wilson_interval(9, 179)  # 5.0 %
    assert lo < 9 / 179 < hi and (lo, hi) == pytest.approx((0.0266, 0.0927), abs=5e-4)
    lo2, hi2 = ev.wilson_interval(90, 1790)
    assert lo < lo2 < hi2 < hi
    assert ev.wilson_interval(0, 0) is None


def test_false_positive_ranked_first_halves_precision_and_ap():
    results = [R([[0, 0, 10, 10]], [0], [[50, 50, 60, 60], [0, 0, 10, 10]], [0.9, 0.8], [0, 0])]
    box, _ = ev.box_metrics(results, ["scratch"], {"scratch": 0.5})
    assert box["map50"] == pytest.approx(0.5, abs=0.02)
    assert box["per_class"]["scratch"]["precision"] == 0.5 and box["per_class"]["scratch"]["recall"] == 1.0


def test_escape_and_overkill_at_thresholds():
    results = [R([[0, 0, 10, 10]], [0], [[0, 0, 10, 10]], [0.3], [0]),   # NG, weak detection
               R([[0, 0, 10, 10]], [1], [[0, 0, 10, 10]], [0.9], [1]),   # NG, strong
               R([], [], [[1, 1, 5, 5]], [0.4], [1]),                    # OK part with a false alarm
               R([], [])]
    scores, ng = ev.part_scores(results, 2), np.array([True, True, False, False])
    high = ev.part_rates(scores, ng, np.array([0.5, 0.5]))
    assert (high["escapes"], high["overkills"], high["escape_rate"], high["overkill_rate"]) == (1, 0, 0.5, 0.0)
    low = ev.part_rates(scores, ng, np.array([0.25, 0.35]))
    assert (low["escapes"], low["overkills"], low["overkill_rate"]) == (0, 1, 0.5)


def test_all_defective_split_reports_overkill_as_unknown():
    rates = ev.part_rates(np.array([[0.9]]), np.array([True]), np.array([0.5]))
    assert rates["overkill_rate"] is None and rates["escape_rate"] == 0.0


def test_calibration_hits_the_target_escape_rate():
    rng = np.random.default_rng(1)
    results = [R([[0, 0, 10, 10]], [0], [[0, 0, 10, 10]], [s], [0]) for s in rng.uniform(0.05, 0.95, 100)]
    results += [R([], [], [[0, 0, 4, 4]], [s], [0]) for s in rng.uniform(0.0, 0.5, 50)]
    t = ev.calibrate(results, ["scratch", "dent"], target_escape=0.1, default=0.25)
    assert t["dent"] == 0.25  # no dent in the split: keeps the default
    rates = ev.part_rates(ev.part_scores(results, 2), np.array([True] * 100 + [False] * 50),
                          np.array([t["scratch"], t["dent"]]))
    assert rates["escape_rate"] <= 0.1 and rates["escape_rate"] >= 0.08  # the highest threshold that meets it
    tighter = ev.calibrate(results, ["scratch", "dent"], target_escape=0.01, default=0.25)
    assert tighter["scratch"] < t["scratch"]


def test_calibration_lets_through_only_the_parts_that_hold_the_budget_on_new_parts():
    """180 NG parts at a 2 % budget: 3.6 parts, but a threshold that lets 3 of them through lets a new NG
    part through with probability 4/181 = 2.2 % (evidence.escapes_allowed); 2 is what holds 2 %."""
    rng = np.random.default_rng(3)
    s = rng.uniform(0.05, 0.95, 180)
    results = [R([[0, 0, 10, 10]], [0], [[0, 0, 10, 10]], [x], [0]) for x in s]
    results += [R([], [], [[0, 0, 4, 4]], [x], [0]) for x in rng.uniform(0.0, 0.5, 60)]
    t = ev.calibrate(results, ["scratch", "dent"], target_escape=0.02, default=0.25)
    assert (s < t["scratch"]).sum() == escapes_allowed(180, 0.02) == 2


def test_confusion_matrix_counts_misses_and_false_alarms():
    results = [R([[0, 0, 10, 10], [20, 20, 30, 30]], [0, 1], [[0, 0, 10, 10], [50, 50, 60, 60]], [0.9, 0.9], [1, 0])]
    cm = ev.confusion(results, 2, np.array([0.5, 0.5]))
    assert cm[1, 0] == 1  # scratch predicted as dent
    assert cm[2, 1] == 1  # the dent was missed
    assert cm[0, 2] == 1  # a scratch where there is nothing


@pytest.mark.slow
def test_bundle_and_pt_agree_and_json_and_plots_are_written(bundle, trained, synth_data, tmp_path):
    on_bundle = ev.evaluate_model(bundle.bundle, synth_data, "val", target_escape=0.05, backend="onnxruntime",
                                  plots_dir=tmp_path / "plots")
    on_pt = ev.evaluate_model(trained.best, synth_data, "val", target_escape=0.05)
    assert on_bundle["runs_on"].startswith("bundle") and "onnxruntime" in on_bundle["runs_on"]
    assert on_pt["runs_on"].startswith("pytorch")
    assert abs(on_bundle["map50"] - on_pt["map50"]) <= 0.01 and abs(on_bundle["map50_95"] - on_pt["map50_95"]) <= 0.01
    assert on_bundle["parts"]["escapes"] == on_pt["parts"]["escapes"]
    for key in ("map50", "map50_95", "escape_rate", "overkill_rate", "thresholds", "per_class"):
        assert key in on_bundle
    assert on_bundle["parts"]["ok_parts"] > 0  # synthetic data has OK parts (empty label files)
    for name in ("pr_curves.png", "confusion_matrix.png", "escape_overkill_vs_threshold.png"):
        assert (tmp_path / "plots" / name).stat().st_size > 1000


@pytest.mark.slow
def test_cli_evaluate_writes_json(bundle, synth_data, tmp_path, capsys):
    from defectgate.cli import main

    out = tmp_path / "eval.json"
    assert main(["evaluate", "--model", str(bundle.bundle), "--data", str(synth_data), "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert set(data["thresholds"]) == {"scratch", "dent", "crack", "stain"}
    assert "escape rate" in capsys.readouterr().out
    assert main(["evaluate", "--model", str(tmp_path / "nothing"), "--data", str(synth_data)]) == 2


class _NoModel:
    """Stands in for a Detector where the test is about the data, not the model."""

    classes = ["scratch", "dent"]

    def detect(self, image):
        return Detections.empty()


def _dataset(tmp_path, names=("scratch", "dent"), label="0 0.5 0.5 0.2 0.2\n", corrupt=False):
    import cv2

    (tmp_path / "images" / "val").mkdir(parents=True)
    (tmp_path / "labels" / "val").mkdir(parents=True)
    img = tmp_path / "images" / "val" / "a.png"
    if corrupt:
        img.write_bytes(b"not a png")
    else:
        cv2.imwrite(str(img), np.zeros((32, 32, 3), np.uint8))
    (tmp_path / "labels" / "val" / "a.txt").write_text(label)
    (tmp_path / "data.yaml").write_text(f"path: {tmp_path}\nval: images/val\nnames: {list(names)}\n")
    return tmp_path / "data.yaml"


def test_bad_data_is_named_with_file_and_line(tmp_path):
    from defectgate.errors import BundleError, DatasetError

    with pytest.raises(DatasetError, match=r"a\.txt:2: class id 7 is outside 0\.\.1"):
        ev.collect(_NoModel(), _dataset(tmp_path / "1", label="0 0.5 0.5 0.1 0.1\n7 0.5 0.5 0.1 0.1\n"), "val")
    with pytest.raises(DatasetError, match=r"a\.txt:1: expected 'class cx cy w h'"):
        ev.collect(_NoModel(), _dataset(tmp_path / "2", label="0 0.5 0.5\n"), "val")
    with pytest.raises(DatasetError, match=r"a\.png: image cannot be read"):
        ev.collect(_NoModel(), _dataset(tmp_path / "3", corrupt=True), "val")
    with pytest.raises(BundleError, match="differ from"):
        ev.collect(_NoModel(), _dataset(tmp_path / "4", names=("dent", "scratch")), "val")
    with pytest.raises(DatasetError, match="split 'test' is not defined"):
        ev.collect(_NoModel(), _dataset(tmp_path / "5"), "test")


def test_empty_label_files_are_ok_parts(tmp_path):
    results, names = ev.collect(_NoModel(), _dataset(tmp_path, label=""), "val")
    assert names == ["scratch", "dent"] and len(results[0].gt_cls) == 0


def test_calibration_spends_the_escape_budget_at_the_part_level():
    """Parts with two defects are caught by either class: calibrating each class alone to the target
    would over-deliver and reject good parts needlessly; the part-level target is what counts."""
    rng = np.random.default_rng(2)
    results = []
    for s0, s1 in rng.uniform(0.05, 0.95, (100, 2)):  # NG parts holding a scratch and a dent
        results.append(R([[0, 0, 10, 10], [20, 20, 30, 30]], [0, 1], [[0, 0, 10, 10], [20, 20, 30, 30]],
                         [s0, s1], [0, 1]))
    results += [R([], [], [[0, 0, 4, 4]], [s], [int(s * 10) % 2]) for s in rng.uniform(0.0, 0.6, 100)]
    names = ["scratch", "dent"]
    scores, ng = ev.part_scores(results, 2), np.array([True] * 100 + [False] * 100)
    t = ev.calibrate(results, names, target_escape=0.05, default=0.25)
    rates = ev.part_rates(scores, ng, np.array([t[n] for n in names]))
    assert rates["escape_rate"] <= 0.05
    # the naive per-class choice: each class alone lets 5 % of its parts through
    naive = np.array([np.sort(scores[:, c][ng])[5] for c in range(2)])
    naive_rates = ev.part_rates(scores, ng, naive)
    assert naive_rates["escape_rate"] < 0.01  # over-delivers: a part escapes only if both classes miss
    assert rates["overkill_rate"] < naive_rates["overkill_rate"]
    # and no class is calibrated blind: each alone still catches at least half of its defects
    for c, n in enumerate(names):
        assert (scores[ng, c] >= t[n]).mean() >= 0.5


def test_thresholds_calibrated_on_one_split_are_reported_on_another(bundle, synth_data, tmp_path):
    """`--calib-data`: thresholds fitted on other parts than those the rates are reported on (make retrain
    calibrates on `data halves`' calib.yaml and reports on gate.yaml). The calibration set here holds only
    good parts (the images without their labels), so its thresholds stay at the model's own (0.7, no
    defect to fit), while fitting on the reported split itself moves them."""
    import json
    import shutil

    import yaml

    from defectgate_training.datayaml import load_data_yaml, split_images

    model = tmp_path / "model"
    shutil.copytree(bundle.bundle, model)
    side = json.loads((model / "model.json").read_text())
    side["class_thresholds"] = {c: 0.7 for c in side["classes"]}
    (model / "model.json").write_text(json.dumps(side))
    ok_only = tmp_path / "ok_only"
    (ok_only / "images" / "val").mkdir(parents=True)
    for img in split_images(load_data_yaml(synth_data), "val"):
        shutil.copy(img, ok_only / "images" / "val" / img.name)  # no label files: every part is OK
    names = load_data_yaml(synth_data).names
    (ok_only / "data.yaml").write_text(yaml.safe_dump({"path": str(ok_only), "val": "images/val",
                                                       "names": dict(enumerate(names))}))
    kw = dict(target_escape=0.0, backend="onnxruntime")
    on_other = ev.evaluate_model(model, synth_data, "val", calib_data=ok_only / "data.yaml", **kw)
    on_itself = ev.evaluate_model(model, synth_data, "val", **kw)
    assert on_other["thresholds"] == {c: 0.7 for c in names}, "fitted on the calibration set"
    assert on_itself["thresholds"] != on_other["thresholds"]
    assert on_other["calibrated_on"] == f"{ok_only / 'data.yaml'}:val"
    assert on_itself["calibrated_on"].endswith("(the reported split itself)")
    assert on_other["parts"]["parts"] == on_itself["parts"]["parts"], "the rates are the reported split's"
