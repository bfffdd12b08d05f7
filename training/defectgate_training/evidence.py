"""How sure are we that a candidate model lets no more bad parts through? The escape bound and the
evidence rule that `defectgate promote --evidence` applies.

The evidence for one promotion is a set of NG parts whose truth is known, each with what the current
and the candidate model said about it:
- the offline gate split (every NG image of it; truth from the labels), and
- the reviewed disagreements from the line (shadow mode) or from a replay: parts where the two models
  disagreed and a QA reviewer said whether the part really has a defect.
Parts on which both models agreed and nobody looked are not evidence: they say nothing about which
model is better, and their truth is unknown.

The rule (`judge`): the candidate is promoted only when
1. its escape count on the evidence is not higher than the current model's (same parts, so counts
   compare directly), and
2. the one-sided 95 % Clopper-Pearson upper confidence bound on its escape rate is at or below the
   configured limit: "escape <= X % at 95 % confidence, on N NG parts".
When even zero escapes on the NG parts at hand could not bring the bound under the limit, the evidence
is too thin to state it: the promotion is refused with the number of NG parts needed.

Why Clopper-Pearson: it is exact (built on the binomial distribution itself), never below the true
coverage, and well defined at zero escapes, where normal approximations claim a certainty of 0 %.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from defectgate.errors import DefectgateError

CONFIDENCE = 0.95


class EvidenceError(DefectgateError):
    """The evidence for a promotion is missing, inconsistent or too thin to state a bound."""


def _binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed in log space (exact enough for n up to ~1e6)."""
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 1.0 if k >= n else 0.0
    lp, lq = math.log(p), math.log1p(-p)
    terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq
             for i in range(k + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def clopper_pearson_upper(escapes: int, n: int, confidence: float = CONFIDENCE) -> float:
    """One-sided upper confidence bound on a rate seen as `escapes` of `n`: the largest p at which
    seeing `escapes` or fewer still has probability 1 - confidence. 1.0 when n is 0."""
    if n < 0 or escapes < 0 or escapes > n:
        raise EvidenceError(f"escape bound: {escapes} escapes of {n} NG parts is not a count")
    if not 0.5 <= confidence < 1.0:
        raise EvidenceError(f"escape bound: confidence {confidence} must be in [0.5, 1)")
    if n == 0 or escapes == n:
        return 1.0
    alpha = 1.0 - confidence
    if escapes == 0:  # closed form: (1 - p)^n = alpha
        return 1.0 - alpha ** (1.0 / n)
    lo, hi = escapes / n, 1.0  # the CDF falls with p: bisect for CDF(p) = alpha
    for _ in range(100):
        mid = (lo + hi) / 2
        if _binom_cdf(escapes, n, mid) > alpha:
            lo = mid
        else:
            hi = mid
    return hi


def ng_parts_needed(limit: float, escapes: int = 0, confidence: float = CONFIDENCE) -> int:
    """The fewest NG parts on which `escapes` escapes still give an upper bound at or below `limit`."""
    if not 0.0 < limit < 1.0:
        raise EvidenceError(f"escape limit {limit} must be a rate between 0 and 1 (e.g. 0.05 for 5 %)")
    n = max(escapes + 1, math.ceil(math.log(1.0 - confidence) / math.log1p(-limit)))
    while clopper_pearson_upper(escapes, n, confidence) > limit:
        n = max(n + 1, int(n * 1.1))
    lo = max(escapes + 1, n // 2)  # the bound falls with n: find the smallest n that meets the limit
    while lo < n:
        mid = (lo + n) // 2
        if clopper_pearson_upper(escapes, mid, confidence) <= limit:
            n = mid
        else:
            lo = mid + 1
    return n


def escapes_allowed(ng_parts: int, target_escape: float) -> int:
    """How many of `ng_parts` calibration NG parts a threshold may let through so that the escape rate
    on *new* parts stays within `target_escape`, in expectation over calibration splits.

    Why not floor(target x n), the count the calibration split itself tolerates: a new NG part,
    exchangeable with the n calibration ones, ranks anywhere among the n + 1 scores with equal chance,
    so a threshold at the (k+1)-th lowest calibration score lets it through with probability
    (k + 1) / (n + 1). With k = floor(target x n) that is above the target for almost every n: on
    NEU-DET's 180 calibration NG parts at 2 %, 4/181 = 2.2 %, which is what the hold-out half showed.
    The largest k with (k + 1) / (n + 1) <= target is floor(target x (n + 1)) - 1 (the split-conformal
    quantile). Below zero (n + 1 < 1 / target), no threshold set on these parts can promise the target:
    0 is returned, the strictest the parts allow, and `finest_budget` says what they can promise."""
    if ng_parts < 0 or not 0.0 <= target_escape < 1.0:
        raise EvidenceError(f"calibration: {ng_parts} NG parts at escape target {target_escape} "
                            "(a count, and a rate in [0, 1))")
    # the small epsilon keeps a product that is an integer in exact arithmetic (0.02 x 150) from flooring below it
    return max(0, math.floor(target_escape * (ng_parts + 1) + 1e-9) - 1)


def finest_budget(ng_parts: int) -> float:
    """The lowest expected escape rate a threshold set on `ng_parts` NG parts can promise: 1 / (n + 1)."""
    return 1.0 / (ng_parts + 1)


@dataclass
class EscapeCount:
    """Escapes of one model on the NG parts of one evidence source."""

    ng_parts: int = 0
    escapes: int = 0

    def __add__(self, other: "EscapeCount") -> "EscapeCount":
        return EscapeCount(self.ng_parts + other.ng_parts, self.escapes + other.escapes)

    @property
    def rate(self) -> float | None:
        return self.escapes / self.ng_parts if self.ng_parts else None


@dataclass
class EvidenceSource:
    """One source of evidence, e.g. the gate split or the reviewed shadow disagreements."""

    name: str
    current: EscapeCount
    candidate: EscapeCount
    detail: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.current.ng_parts != self.candidate.ng_parts:
            raise EvidenceError(f"evidence '{self.name}': the two models were judged on different NG parts "
                                f"({self.current.ng_parts} vs {self.candidate.ng_parts}); evidence must be the same parts")


@dataclass
class EvidenceVerdict:
    promote: bool
    reasons: list[str]
    ng_parts: int
    current_escapes: int
    candidate_escapes: int
    candidate_upper: float
    limit: float
    confidence: float
    needed_ng_parts: int | None
    sources: list[dict]

    @property
    def statement(self) -> str:
        """What the sidecar and the registry say about the promoted model's escape rate."""
        return (f"escape <= {100 * self.candidate_upper:.2f} % at {100 * self.confidence:.0f} % confidence, "
                f"on {self.ng_parts} NG parts ({self.candidate_escapes} escaped)")

    def to_json(self) -> dict:
        out = asdict(self)
        out["statement"] = self.statement
        return out


def judge(sources: list[EvidenceSource], limit: float, confidence: float = CONFIDENCE) -> EvidenceVerdict:
    """Apply the rule in the module docstring to the summed evidence."""
    if not sources:
        raise EvidenceError("no evidence: name the gate split (--data) and/or the reviewed disagreements")
    if not 0.0 < limit < 1.0:
        raise EvidenceError(f"escape limit {limit} must be a rate between 0 and 1 (e.g. 0.05 for 5 %)")
    cur = sum((s.current for s in sources), EscapeCount())
    cand = sum((s.candidate for s in sources), EscapeCount())
    upper = clopper_pearson_upper(cand.escapes, cand.ng_parts, confidence)
    reasons, needed = [], None
    if cand.escapes > cur.escapes:
        reasons.append(f"the candidate let {cand.escapes} of {cand.ng_parts} NG parts through, the current model "
                       f"{cur.escapes}")
    if upper > limit:
        needed = ng_parts_needed(limit, cand.escapes, confidence)
        if cand.ng_parts == 0 or clopper_pearson_upper(0, cand.ng_parts, confidence) > limit:
            reasons.append(f"too few NG parts to state the bound: {cand.ng_parts} known, at least {needed} needed "
                           f"for escape <= {100 * limit:g} % at {100 * confidence:.0f} % confidence even with no escape; "
                           "review more disagreements or use a larger gate split")
        else:
            reasons.append(f"escape upper bound {100 * upper:.2f} % > limit {100 * limit:g} % ({cand.escapes} of "
                           f"{cand.ng_parts} escaped; {needed} NG parts with that many escapes would meet it)")
    return EvidenceVerdict(not reasons, reasons, cand.ng_parts, cur.escapes, cand.escapes, upper, limit, confidence,
                           needed, [asdict(s) for s in sources])
