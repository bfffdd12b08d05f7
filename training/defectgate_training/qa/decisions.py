"""What a reviewer can say about an archived part, and what it means for the dataset.

The line said OK or NG; the reviewer says whether the part really has a defect:
    line NG + defect     -> confirm_defect  (labels: the possibly edited boxes)
    line NG + no defect  -> false_reject    (an OK image with an empty label file: a negative)
    line OK + defect     -> missed_defect   (an escape; labels: the boxes the reviewer drew)
    line OK + no defect  -> correct_pass    (a negative as well)
"""

from __future__ import annotations

import enum

from .errors import QAError


class Decision(str, enum.Enum):
    CONFIRM_DEFECT = "confirm_defect"
    FALSE_REJECT = "false_reject"
    MISSED_DEFECT = "missed_defect"
    CORRECT_PASS = "correct_pass"

    @property
    def reviewer_ng(self) -> bool:
        return self in (Decision.CONFIRM_DEFECT, Decision.MISSED_DEFECT)

    @property
    def line_verdict(self) -> str:
        return "NG" if self in (Decision.CONFIRM_DEFECT, Decision.FALSE_REJECT) else "OK"

    @property
    def label(self) -> str:
        return LABELS[self]


LABELS = {
    Decision.CONFIRM_DEFECT: "Confirm defect",
    Decision.FALSE_REJECT: "False reject",
    Decision.MISSED_DEFECT: "Missed defect",
    Decision.CORRECT_PASS: "Correct pass",
}


def parse_decision(value: str) -> Decision:
    try:
        return Decision(value)
    except ValueError:
        allowed = ", ".join(d.value for d in Decision)
        raise QAError(f"decision {value!r} is unknown; use one of {allowed}") from None


def check_decision(decision: Decision, line_verdict: str, n_boxes: int, part_label: str) -> None:
    """Refuse decisions that contradict the line's verdict or leave a defect without a box."""
    if decision.line_verdict != line_verdict:
        fitting = [d.label for d in Decision if d.line_verdict == line_verdict]
        raise QAError(f"{part_label} was {'rejected' if line_verdict == 'NG' else 'passed'} by the line, "
                      f"so '{decision.label}' does not apply; use '{fitting[0]}' or '{fitting[1]}'")
    if decision.reviewer_ng and n_boxes == 0:
        raise QAError(f"{part_label}: '{decision.label}' needs at least one box around the defect; draw one first")
