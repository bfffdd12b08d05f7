"""Quality numbers from the archive and the reviews: counts per day and shift, reject reasons,
false-reject rate and confirmed escapes, and the model-vs-reviewer confusion at part and box level."""

from __future__ import annotations

import collections
import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any, Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .archive_reader import PartRow
from .errors import QAError
from .store import Review

_REASON_RE = re.compile(r"^([A-Za-z0-9_ -]+?)\s*(>=|<=|>|<|=).*$")


@dataclass(frozen=True)
class Shifts:
    """Shift start hours in a local time zone, e.g. 6, 14, 22 -> shifts A (06-14), B, C."""

    starts: tuple[int, ...] = (6, 14, 22)
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if not self.starts or any(not 0 <= h <= 23 for h in self.starts) or len(set(self.starts)) != len(self.starts):
            raise QAError(f"--shift-starts {list(self.starts)}: give distinct hours 0..23, e.g. 6,14,22")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise QAError(f"--timezone {self.timezone!r} is not a known IANA time zone (e.g. UTC, Europe/Berlin)") from exc

    def names(self) -> list[str]:
        s = sorted(self.starts)
        return [f"{chr(65 + i)} {h:02d}-{s[(i + 1) % len(s)]:02d}h" for i, h in enumerate(s)]

    def of(self, ts_utc: str) -> tuple[str, str]:
        """(production day, shift name) of a UTC timestamp. A night shift that crosses midnight
        belongs to the day it started."""
        t = dt.datetime.fromisoformat(ts_utc.replace("Z", "+00:00")).astimezone(ZoneInfo(self.timezone))
        s = sorted(self.starts)
        idx = max((i for i, h in enumerate(s) if t.hour >= h), default=len(s) - 1)
        day = t.date() if t.hour >= s[0] else t.date() - dt.timedelta(days=1)
        return day.isoformat(), self.names()[idx]


@dataclass
class QualityReport:
    parts: int = 0
    ng: int = 0
    failsafe: int = 0
    per_day: dict[str, dict[str, int]] = field(default_factory=dict)
    per_shift: dict[str, dict[str, int]] = field(default_factory=dict)  # "day shift" -> counts
    reasons: dict[str, int] = field(default_factory=dict)
    reviewed_ng: int = 0
    confirmed_defects: int = 0
    false_rejects: int = 0
    reviewed_ok: int = 0
    confirmed_escapes: int = 0
    correct_passes: int = 0
    confusion: dict[str, dict[str, int]] = field(default_factory=dict)  # line verdict -> reviewer verdict
    class_labels: list[str] = field(default_factory=list)
    class_confusion: list[list[int]] = field(default_factory=list)  # rows: model class, cols: reviewer class

    @property
    def false_reject_rate(self) -> float | None:
        return self.false_rejects / self.reviewed_ng if self.reviewed_ng else None

    @property
    def escape_rate_reviewed(self) -> float | None:
        return self.confirmed_escapes / self.reviewed_ok if self.reviewed_ok else None

    def summary_rows(self) -> list[list[Any]]:
        def pct(v: float | None) -> str:
            return "n/a (nothing reviewed)" if v is None else f"{100 * v:.1f} %"
        return [
            ["parts inspected", self.parts],
            ["rejected (NG)", self.ng],
            ["of which fail-safe rejects", self.failsafe],
            ["rejects reviewed", self.reviewed_ng],
            ["confirmed defects", self.confirmed_defects],
            ["false rejects", self.false_rejects],
            ["false-reject rate (reviewed rejects)", pct(self.false_reject_rate)],
            ["passed parts reviewed", self.reviewed_ok],
            ["confirmed escapes (missed defects)", self.confirmed_escapes],
            ["escape rate (reviewed passes)", pct(self.escape_rate_reviewed)],
        ]


def reason_key(reason: str) -> str:
    """'scratch>=0.41' -> 'scratch'; 'deadline_missed' stays as it is."""
    m = _REASON_RE.match(reason)
    return m.group(1) if m else reason


def build_report(parts: Sequence[PartRow], reviews: dict[int, Review], classes: Sequence[str],
                 shifts: Shifts = Shifts()) -> QualityReport:
    rep = QualityReport()
    reasons: collections.Counter[str] = collections.Counter()
    for p in parts:
        day, shift = shifts.of(p.ts_utc)
        rep.parts += 1
        rep.ng += p.verdict == "NG"
        rep.failsafe += p.failsafe
        rep.per_day.setdefault(day, {"OK": 0, "NG": 0})[p.verdict] += 1
        rep.per_shift.setdefault(f"{day} {shift}", {"OK": 0, "NG": 0})[p.verdict] += 1
        if p.verdict == "NG":
            reasons.update({reason_key(r) for r in p.reasons} or {"(no reason recorded)"})
    rep.reasons = dict(reasons.most_common())
    rep.confusion = {"NG": {"NG": 0, "OK": 0}, "OK": {"NG": 0, "OK": 0}}
    labels = list(classes) + ["(none)"]
    matrix = [[0] * len(labels) for _ in labels]
    for r in reviews.values():
        reviewer = "NG" if r.decision.reviewer_ng else "OK"
        rep.confusion[r.line_verdict][reviewer] += 1
        if r.line_verdict == "NG":
            rep.reviewed_ng += 1
            rep.confirmed_defects += reviewer == "NG"
            rep.false_rejects += reviewer == "OK"
        else:
            rep.reviewed_ok += 1
            rep.confirmed_escapes += reviewer == "NG"
            rep.correct_passes += reviewer == "OK"
        for m, h in match_boxes(r.model_boxes, r.boxes if r.decision.reviewer_ng else []):
            mi = labels.index(m) if m in labels else len(labels) - 1
            hi = labels.index(h) if h in labels else len(labels) - 1
            matrix[mi][hi] += 1
    rep.class_labels, rep.class_confusion = labels, matrix
    return rep


def match_boxes(model: Sequence[dict[str, Any]], reviewer: Sequence[dict[str, Any]],
                iou_min: float = 0.3) -> list[tuple[str, str]]:
    """Greedy IoU matching of model boxes to reviewer boxes -> (model class, reviewer class) pairs;
    unmatched boxes pair with '(none)' (a false box of the model, or a defect it missed)."""
    pairs, used = [], set()
    for mb in sorted(model, key=lambda b: -float(b.get("confidence", 0))):
        best, best_iou = None, iou_min
        for j, rb in enumerate(reviewer):
            if j not in used and (v := iou(mb["xyxy"], rb["xyxy"])) >= best_iou:
                best, best_iou = j, v
        if best is None:
            pairs.append((str(mb.get("class")), "(none)"))
        else:
            used.add(best)
            pairs.append((str(mb.get("class")), str(reviewer[best]["class"])))
    pairs += [("(none)", str(rb["class"])) for j, rb in enumerate(reviewer) if j not in used]
    return pairs


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
