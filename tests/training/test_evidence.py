"""The escape bound and the evidence rule of `defectgate promote --evidence`."""

from __future__ import annotations

import pytest

import numpy as np

from defectgate_training.evidence import (EscapeCount, EvidenceError, EvidenceSource, clopper_pearson_upper,
                                          escapes_allowed, finest_budget, judge, ng_parts_needed)
from defectgate_training.partscore_fit import escape_threshold

stats = pytest.importorskip("scipy.stats")


@pytest.mark.parametrize("k,n", [(0, 1), (0, 59), (0, 179), (1, 179), (3, 40), (12, 300), (99, 100), (5, 5000)])
def test_upper_bound_is_the_exact_clopper_pearson_bound(k, n):
    # the textbook form: the 95 % quantile of Beta(k + 1, n - k)
    assert clopper_pearson_upper(k, n) == pytest.approx(stats.beta.ppf(0.95, k + 1, n - k), rel=1e-7, abs=1e-10)


def test_upper_bound_edges_and_bad_counts():
    assert clopper_pearson_upper(0, 0) == 1.0 and clopper_pearson_upper(4, 4) == 1.0
    assert clopper_pearson_upper(0, 59) < 0.05 < clopper_pearson_upper(0, 58)  # the "rule of three" region
    with pytest.raises(EvidenceError, match="3 escapes of 2"):
        clopper_pearson_upper(3, 2)
    with pytest.raises(EvidenceError, match="confidence"):
        clopper_pearson_upper(0, 10, confidence=1.0)


@pytest.mark.parametrize("limit,k", [(0.05, 0), (0.02, 0), (0.05, 2), (0.10, 5), (0.03, 1)])
def test_parts_needed_is_the_smallest_count_that_meets_the_limit(limit, k):
    n = ng_parts_needed(limit, k)
    assert clopper_pearson_upper(k, n) <= limit < clopper_pearson_upper(k, n - 1)


@pytest.mark.parametrize("n,target,k", [(180, 0.02, 2), (179, 0.02, 2), (149, 0.02, 2), (148, 0.02, 1),
                                         (100, 0.10, 9), (25, 0.10, 1), (48, 0.02, 0), (10, 0.02, 0), (0, 0.1, 0)])
def test_escapes_allowed_is_the_largest_count_whose_next_rank_stays_in_budget(n, target, k):
    assert escapes_allowed(n, target) == k
    if (k + 1) / (n + 1) <= target:  # else: too few parts to promise the target, the strictest is returned
        assert (k + 2) / (n + 1) > target


def test_escapes_allowed_refuses_what_is_not_a_count_or_a_rate():
    with pytest.raises(EvidenceError, match="-1 NG parts"):
        escapes_allowed(-1, 0.02)
    with pytest.raises(EvidenceError, match="escape target 2"):
        escapes_allowed(100, 2.0)
    assert finest_budget(179) == pytest.approx(1 / 180)


def test_a_threshold_calibrated_on_some_parts_holds_the_budget_on_new_parts():
    """Many calibration splits of 180 NG parts whose scores are uniform on (0, 1): a threshold t lets a
    new NG part through with probability t itself. Averaged over the splits, the escape on new parts
    must stay within the 2 % budget. Letting floor(2 % x 180) = 3 calibration parts through would
    average 4/181 = 2.2 %: over budget, as NEU-DET's hold-out half measured (4/179)."""
    rng = np.random.default_rng(0)
    on_new_parts = [escape_threshold(rng.uniform(size=180), 0.02) for _ in range(4000)]
    assert np.mean(on_new_parts) <= 0.02
    assert np.mean(on_new_parts) == pytest.approx(3 / 181, abs=1e-3)  # and spends the budget, not less


def _src(name, n, cur_esc, cand_esc):
    return EvidenceSource(name, EscapeCount(n, cur_esc), EscapeCount(n, cand_esc))


def test_promotes_when_no_worse_and_bound_under_limit():
    v = judge([_src("gate_split", 150, 2, 1), _src("reviewed_shadow", 12, 3, 0)], limit=0.05)
    assert v.promote and v.reasons == []
    assert v.ng_parts == 162 and v.candidate_escapes == 1 and v.current_escapes == 5
    assert v.candidate_upper == pytest.approx(clopper_pearson_upper(1, 162))
    assert v.statement.startswith(f"escape <= {100 * v.candidate_upper:.2f} % at 95 % confidence, on 162 NG parts")


def test_refuses_a_candidate_that_escapes_more_even_under_the_limit():
    v = judge([_src("gate_split", 400, 1, 2)], limit=0.05)
    assert not v.promote and "let 2 of 400" in v.reasons[0]


def test_refuses_thin_evidence_with_the_number_needed():
    v = judge([_src("reviewed_shadow", 20, 1, 0)], limit=0.05)
    assert not v.promote and v.needed_ng_parts == ng_parts_needed(0.05, 0) == 59
    assert "too few NG parts" in v.reasons[0] and "at least 59 needed" in v.reasons[0]


def test_refuses_a_bound_over_the_limit_and_says_how_many_parts_would_meet_it():
    v = judge([_src("gate_split", 100, 6, 4)], limit=0.05)
    assert not v.promote and v.needed_ng_parts == ng_parts_needed(0.05, 4)
    assert "upper bound" in v.reasons[0] and f"{v.needed_ng_parts} NG parts" in v.reasons[0]


def test_sources_must_judge_both_models_on_the_same_parts():
    with pytest.raises(EvidenceError, match="different NG parts"):
        EvidenceSource("x", EscapeCount(10, 0), EscapeCount(11, 0))
    with pytest.raises(EvidenceError, match="no evidence"):
        judge([], limit=0.05)
    with pytest.raises(EvidenceError, match="limit 5"):
        judge([_src("g", 10, 0, 0)], limit=5)
