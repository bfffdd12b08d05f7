"""What happened on the line, for the report (report.py), telemetry and the tests."""

from __future__ import annotations

import collections
import itertools
from dataclasses import dataclass, field
from typing import Any

HISTORY_PARTS = 50_000  # per-part detail kept for the report; older parts are folded into counters


@dataclass
class RunStats:
    """What happened on the line, for the report. Truth is kept only for reporting. A station runs
    for months: per-part detail is kept for the most recent HISTORY_PARTS parts only, older parts
    are folded into `folded` counters (memory stays flat; see docs/performance.md, soak)."""

    captured: dict[int, bool | None] = field(default_factory=dict)  # part -> truth NG (recent window)
    judged: dict[int, None] = field(default_factory=dict)  # parts with a verdict (recent window, ordered)
    verdicts: collections.deque = field(default_factory=lambda: collections.deque(maxlen=10_000))
    fired: dict[int, float] = field(default_factory=dict)  # part -> fire time (recent window)
    fire_errors_ms: collections.deque = field(default_factory=lambda: collections.deque(maxlen=10_000))
    folded: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("parts", "truth_known", "ng_truth", "rejected", "escapes", "overkills", "unjudged"), 0))
    verdicts_total: int = 0
    verdict_ng_total: int = 0
    frames: int = 0
    actuator_failures: int = 0
    frames_dropped: int = 0
    inference_failures: int = 0
    late_decisions: int = 0
    missed_fires: int = 0
    unassigned_defects: int = 0  # free-run: detections on no located part
    swaps: int = 0
    shadow: dict | None = None  # shadow.ShadowStats of the run, when a candidate judged in shadow mode
    t_start: float = 0.0
    t_end: float = 0.0
    line: Any = None  # line.stats.LineStats when the config has a `line:` section (issue #23)

    @property
    def parts_total(self) -> int:
        return self.folded["parts"] + len(self.captured)

    def fold(self, keep: int = HISTORY_PARTS) -> None:
        """Fold the oldest parts beyond `keep` into the counters (they are long fired or passed)."""
        excess = len(self.captured) - keep
        if excess <= 0:
            return
        c = self.folded
        for part in list(itertools.islice(self.captured, excess)):
            truth = self.captured.pop(part)
            fired = self.fired.pop(part, None) is not None
            c["parts"] += 1
            c["rejected"] += fired
            if part not in self.judged:
                c["unjudged"] += 1
            self.judged.pop(part, None)
            if truth is not None:
                c["truth_known"] += 1
                c["ng_truth"] += bool(truth)
                c["escapes"] += bool(truth) and not fired
                c["overkills"] += (not truth) and fired
