"""The escape bound and the evidence rule of `defectgate promote --evidence`."""

from __future__ import annotations

import pytest

from defectgate_training.evidence import (EscapeCount, EvidenceError, EvidenceSource, clopper_pearson_upper, judge,
                                          ng_parts_needed)

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
