"""Where the evidence of `defectgate promote --evidence` comes from (the rule is in evidence.py).

- `gate_split_source`: both models evaluated on the offline gate split, each at its own sidecar
  thresholds (the operating point it would run at); truth from the labels.
- `reviewed_source`: the disagreements between the live (current) model and the candidate that a
  station archive recorded, in shadow mode or from `defectgate replay --models A B` (a replay writes
  an archive of the same form: A's verdicts as the parts, B's as the shadow rows). Truth is the QA
  reviewer's decision on the part. A disagreement nobody reviewed yet where the live model rejected
  the part and the candidate would have passed it is counted as an escape of the candidate: it may be
  one, and promotion on evidence assumes the worst of what it has not seen.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from .evidence import EscapeCount, EvidenceError, EvidenceSource


def gate_split_source(candidate: Path, current: Path, data: str | Path, split: str, backend: str) -> tuple[
        EvidenceSource, dict, dict]:
    """(evidence, candidate evaluation, current evaluation) on the gate split."""
    from .evaluate import evaluate_model

    cand = evaluate_model(candidate, data, split, target_escape=None, backend=backend)
    cur = evaluate_model(current, data, split, target_escape=None, backend=backend)
    counts = lambda e: EscapeCount(int(e["parts"]["ng_parts"]), int(e["parts"]["escapes"]))  # noqa: E731
    return EvidenceSource("gate_split", counts(cur), counts(cand), {"data": str(data), "split": split}), cand, cur


def _open_ro(path: Path) -> contextlib.closing[sqlite3.Connection]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    return contextlib.closing(conn)


def reviewed_source(archive: str | Path, reviews: str | Path | None, current_version: str, candidate_version: str,
                    kind: str = "shadow") -> EvidenceSource:
    """Reviewed live-vs-candidate disagreements of one archive, for this pair of model versions."""
    archive = Path(archive)
    db = archive / "parts.sqlite"
    if not db.is_file():
        raise EvidenceError(f"{archive}: no parts.sqlite, so not a station or replay archive; pass --archive with "
                            "the folder a station in shadow mode or 'defectgate replay --models A B' wrote")
    reviews = Path(reviews) if reviews else archive / "reviews.sqlite"
    try:
        with _open_ro(db) as conn:
            rows = conn.execute(
                "SELECT p.id AS row_id, p.verdict AS live, s.verdict AS cand FROM shadow s JOIN parts p "
                "ON p.run_id = s.run_id AND p.part_id = s.part_id "
                "WHERE s.model_version = ? AND p.model_version = ? AND s.verdict != p.verdict",
                (candidate_version, current_version)).fetchall()
            judged = conn.execute("SELECT COUNT(*) FROM shadow s JOIN parts p ON p.run_id = s.run_id AND "
                                  "p.part_id = s.part_id WHERE s.model_version = ? AND p.model_version = ?",
                                  (candidate_version, current_version)).fetchone()[0]
    except sqlite3.Error as exc:
        raise EvidenceError(f"{db}: cannot read the shadow verdicts ({exc}); an archive written before shadow mode "
                            "has none") from exc
    truth = _reviewed_truth(reviews) if reviews.is_file() else {}
    cur, cand = EscapeCount(), EscapeCount()
    unreviewed = unreviewed_risky = 0
    for r in rows:
        ng = truth.get(int(r["row_id"]))
        if ng is None:
            unreviewed += 1
            if r["live"] == "NG":  # the candidate would have passed a part the line rejected: assume an escape
                unreviewed_risky += 1
                cur, cand = cur + EscapeCount(1, 0), cand + EscapeCount(1, 1)
            continue
        if ng:
            cur = cur + EscapeCount(1, int(r["live"] == "OK"))
            cand = cand + EscapeCount(1, int(r["cand"] == "OK"))
    detail = {"archive": str(archive), "reviews": str(reviews), "parts_judged_by_both": int(judged),
              "disagreements": len(rows), "reviewed": len(rows) - unreviewed, "unreviewed": unreviewed,
              "unreviewed_counted_as_candidate_escapes": unreviewed_risky,
              "current_version": current_version, "candidate_version": candidate_version}
    return EvidenceSource(f"reviewed_{kind}", cur, cand, detail)


def _reviewed_truth(reviews: Path) -> dict[int, bool]:
    """archive row id -> the reviewer says the part has a defect (latest review per part)."""
    from .qa.decisions import Decision

    try:
        with _open_ro(reviews) as conn:
            rows = conn.execute("SELECT part_row_id, decision FROM reviews WHERE id IN "
                                "(SELECT MAX(id) FROM reviews GROUP BY part_row_id)").fetchall()
    except sqlite3.Error as exc:
        raise EvidenceError(f"{reviews}: cannot read the QA reviews ({exc})") from exc
    return {int(r["part_row_id"]): Decision(r["decision"]).reviewer_ng for r in rows}
