"""Fit the part score (defectgate.partscore) on a calibration split and calibrate its threshold to an
escape budget; `evaluate --part-score` and `export --part-score` call it.

The weights are an L2-regularised logistic regression of "the part is NG" on the runtime's part
features, with NG and OK parts weighted equally (a split has about twice as many NG parts as OK ones,
and both errors matter). The threshold is the highest that keeps the expected escape rate on new parts
within the target (evidence.escapes_allowed: one NG part fewer than the target's share of the split,
usually), read from out-of-fold scores: each part scored by weights fitted without it, so that the
threshold is not set on scores the weights have already seen (in-sample NG scores are too high and
the hold-out escape rate would exceed the target).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from defectgate.decision import build_decision
from defectgate.errors import DefectgateError
from defectgate.partscore import PartScore, feature_names
from defectgate.types import Outcome

from .evidence import escapes_allowed

L2 = 1.0
FOLDS = 5
BOX_FLOOR = 0.01  # the lowest box a part score looks at; evaluate decodes down to 0.001


class PartScoreError(DefectgateError):
    """A part score cannot be fitted on this split."""


def _unfitted(names: Sequence[str], box_floor: float) -> PartScore:
    """A part score over every feature with no weights yet: what features and candidates are read with."""
    features = feature_names(names)
    return PartScore(tuple(names), tuple(features), np.zeros(len(features)), 0.0, 1.0, box_floor)


def candidates(results, names: Sequence[str], box_floor: float):
    """Each part's detections as the station's decision sees them under a part score (at or above the
    box floor, no spatial rules in evaluation): the one `Decision.keep` path."""
    decision = build_decision(names, 0.0, {}, {}, part_score=_unfitted(names, box_floor))
    return [r.det[decision.keep(r.det, r.hw)] for r in results]


def feature_matrix(results, names: Sequence[str], box_floor: float = BOX_FLOOR) -> np.ndarray:
    probe = _unfitted(names, box_floor)
    rows = [probe.vector(d, r.hw) for d, r in zip(candidates(results, names, box_floor), results)]
    return np.stack(rows) if rows else np.zeros((0, len(probe.features)))


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = L2, iters: int = 50) -> tuple[np.ndarray, float]:
    """Weights and bias in the features' own units (Newton steps on standardised features, balanced
    class weights, L2 on the weights but not the bias)."""
    mu, sd = x.mean(0), x.std(0)
    sd = np.where(sd > 1e-9, sd, 1.0)
    z = np.hstack([(x - mu) / sd, np.ones((len(x), 1))])
    n_pos, n_neg = max(int(y.sum()), 1), max(int((1 - y).sum()), 1)
    sample_w = np.where(y > 0, len(y) / (2 * n_pos), len(y) / (2 * n_neg))
    reg = np.full(z.shape[1], l2)
    reg[-1] = 0.0
    beta = np.zeros(z.shape[1])
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ beta, -60, 60)))
        grad = z.T @ (sample_w * (p - y)) + reg * beta
        hess = (z * (sample_w * p * (1 - p))[:, None]).T @ z + np.diag(reg + 1e-9)
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.abs(step).max() < 1e-8:
            break
    w = beta[:-1] / sd
    return w, float(beta[-1] - (w * mu).sum())


def out_of_fold_scores(x: np.ndarray, y: np.ndarray, folds: int = FOLDS, seed: int = 0) -> np.ndarray:
    """Each part's score from weights fitted on the other folds (folds stratified by NG / OK)."""
    rng = np.random.default_rng(seed)
    fold = np.zeros(len(y), int)
    for label in (0, 1):
        idx = np.where(y == label)[0]
        fold[rng.permutation(idx)] = np.arange(len(idx)) % folds
    scores = np.zeros(len(y))
    for k in range(folds):
        train = fold != k
        w, b = fit_logistic(x[train], y[train])
        scores[~train] = 1.0 / (1.0 + np.exp(-np.clip(x[~train] @ w + b, -60, 60)))
    return scores


def escape_threshold(ng_scores: np.ndarray, target_escape: float) -> float:
    """The highest threshold that keeps the escape rate on new parts within `target_escape`: it lets
    through as many of these NG parts as evidence.escapes_allowed says (one fewer than the budget's
    share of them, usually: see there why)."""
    return threshold_passing(ng_scores, escapes_allowed(len(ng_scores), target_escape))


def threshold_passing(ng_scores: np.ndarray, allowed: int) -> float:
    """The highest threshold at which at most `allowed` of these NG parts score below it."""
    s = np.sort(ng_scores)
    return float(s[min(allowed, len(s) - 1)])


def fit_part_score(results, names: Sequence[str], target_escape: float, fitted_on: str,
                   box_floor: float = BOX_FLOOR) -> dict:
    """The sidecar's `part_score` section (bundle.PartScoreSpec) fitted on `results`."""
    y = np.array([len(r.gt_cls) > 0 for r in results], float)
    n_ng, n_ok = int(y.sum()), int((1 - y).sum())
    if n_ok < FOLDS or n_ng < FOLDS:
        raise PartScoreError(f"{fitted_on}: {n_ng} NG and {n_ok} OK parts; a part score needs at least {FOLDS} of each "
                             "to fit (add OK parts with `defectgate data okparts`)")
    x = feature_matrix(results, names, box_floor)
    w, b = fit_logistic(x, y)
    threshold = escape_threshold(out_of_fold_scores(x, y)[y > 0], target_escape)
    return {"kind": "logistic", "features": feature_names(names), "weights": [round(float(v), 6) for v in w],
            "bias": round(b, 6), "threshold": round(float(np.clip(threshold, 0.0, 1.0)), 6), "box_floor": box_floor,
            "target_escape_rate": target_escape, "fitted_on": fitted_on}


def part_score_values(results, names: Sequence[str], score: PartScore) -> np.ndarray:
    """Each part's score under `score`, through the station's decision path."""
    dets = candidates(results, names, score.box_floor)
    return np.array([score.score(d, r.hw) if len(d) else 0.0 for d, r in zip(dets, results)])


def score_of(spec: dict, names: Sequence[str]) -> PartScore:
    return PartScore(tuple(names), tuple(spec["features"]), np.asarray(spec["weights"], np.float64), float(spec["bias"]),
                     float(spec["threshold"]), float(spec["box_floor"]))


def part_score_decision(results, calib_results, names: Sequence[str], target_escape: float | None, declared,
                        fit: bool, calibrated_on: str) -> dict | None:
    """The part score a report judges with, and its rates on `results`. `fit`: weights and threshold
    fitted on `calib_results` (`--part-score`); else the bundle's `declared` spec, its threshold
    re-calibrated on `calib_results` when there is a `target_escape`; None when neither applies."""
    from .evaluate import rates_of

    if not fit and declared is None:
        return None
    if fit:
        if target_escape is None:
            raise PartScoreError("--part-score fits the score to an escape budget; drop --no-calibrate "
                                 "(a bundle with a part score is judged by its own without --part-score)")
        spec = fit_part_score(calib_results, names, target_escape, calibrated_on)
    else:
        spec = declared.model_dump()
        if target_escape is not None:
            calib_ng = np.array([len(r.gt_cls) > 0 for r in calib_results])
            values = part_score_values(calib_results, names, score_of(spec, names))
            spec.update(threshold=round(escape_threshold(values[calib_ng], target_escape), 6),
                        target_escape_rate=target_escape,
                        fitted_on=f"weights: {declared.fitted_on}; threshold: {calibrated_on}")
    score = score_of(spec, names)
    decision = build_decision(names, 0.0, {}, {}, part_score=score)
    ng = np.array([len(r.gt_cls) > 0 for r in results])
    rejected = np.array([decision(r.det, r.hw)[0] is Outcome.NG for r in results], bool)
    values = part_score_values(results, names, score)
    ts = np.linspace(0.01, 0.99, 99)
    sweep = [rates_of(values >= t, ng) for t in ts]
    return {"spec": spec, "parts": rates_of(rejected, ng), "rejected": rejected, "values": values,
            "sweep": {"threshold": ts.round(3).tolist(), "escape_rate": [r["escape_rate"] for r in sweep],
                      "overkill_rate": [r["overkill_rate"] for r in sweep]}}


def at_matched_escape(decisions: dict[str, np.ndarray], ng: np.ndarray, escapes: Sequence[int]) -> list[dict]:
    """Each decision's overkill where its curve lets at most k NG parts through, for each k: the
    decisions compared at the same escape, which calibrated operating points (each missing its budget
    by a part or two either way) do not give. A reading of the curves on these very parts, not an
    operating point: the thresholds here are fitted on the parts they are scored on."""
    from .evaluate import rates_of

    n_ng = int(ng.sum())
    if n_ng == 0:
        return []  # no NG part: no escape to match
    rows = []
    for k in sorted(set(int(k) for k in escapes)):
        row: dict = {"escapes_allowed": k, "escape_rate_max": round(k / n_ng, 4)}
        for name, values in decisions.items():
            t = threshold_passing(values[ng], k)
            row[name] = {"threshold": round(t, 6), **rates_of(values >= t, ng)}
        rows.append(row)
    return rows
