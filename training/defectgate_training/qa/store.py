"""The QA app's own SQLite database (default `<archive>/reviews.sqlite`). Every decision is
appended with who and when; the current decision for a part is its latest row. Labels drawn on
images outside the archive (the Label tab) are kept here too, keyed by image path and hash."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .decisions import Decision
from .errors import QAError

SCHEMA = """
CREATE TABLE IF NOT EXISTS reviews (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    part_row_id   INTEGER NOT NULL,             -- parts.id in the archive's parts.sqlite
    reviewer      TEXT    NOT NULL,
    ts_utc        TEXT    NOT NULL,
    decision      TEXT    NOT NULL,
    line_verdict  TEXT    NOT NULL,             -- what the line said, copied for the quality views
    boxes         TEXT    NOT NULL,             -- JSON list of {xyxy, class, class_id} in image pixels
    model_boxes   TEXT    NOT NULL,             -- the line's detections at review time (confusion view)
    note          TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS reviews_part ON reviews (part_row_id, id);
CREATE TABLE IF NOT EXISTS labels (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    image         TEXT    NOT NULL,             -- absolute path of a labelled image (inside a --label-dir)
    image_sha256  TEXT    NOT NULL,
    width         INTEGER NOT NULL,
    height        INTEGER NOT NULL,
    reviewer      TEXT    NOT NULL,
    ts_utc        TEXT    NOT NULL,
    boxes         TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS labels_image ON labels (image, id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Review:
    id: int
    part_row_id: int
    reviewer: str
    ts_utc: str
    decision: Decision
    line_verdict: str
    boxes: list[dict[str, Any]]
    model_boxes: list[dict[str, Any]]
    note: str


@dataclass(frozen=True)
class ImageLabel:
    id: int
    image: str
    image_sha256: str
    width: int
    height: int
    reviewer: str
    ts_utc: str
    boxes: list[dict[str, Any]]


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


class ReviewStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.executescript(SCHEMA)
            self._conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', '1')")
            self._conn.commit()
        except (OSError, sqlite3.Error) as exc:
            raise QAError(f"{self.path}: cannot open the review database ({exc}); "
                          "pass --reviews with a writable file path") from exc
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.Lock()  # gradio runs handlers on worker threads

    def close(self) -> None:
        self._conn.close()

    # ---- archive reviews ----
    def add_review(self, part_row_id: int, reviewer: str, decision: Decision, line_verdict: str,
                   boxes: Sequence[dict[str, Any]], model_boxes: Sequence[dict[str, Any]], note: str = "") -> Review:
        reviewer = reviewer.strip()
        if not reviewer:
            raise QAError("reviewer name is empty; type your name in the 'Reviewer' box (or log in) before deciding")
        ts = utc_now()
        with self._lock, self._conn:
            cur = self._conn.execute(
                "INSERT INTO reviews (part_row_id, reviewer, ts_utc, decision, line_verdict, boxes, model_boxes, note)"
                " VALUES (?,?,?,?,?,?,?,?)",
                (int(part_row_id), reviewer, ts, decision.value, line_verdict, json.dumps(list(boxes)),
                 json.dumps(list(model_boxes)), note))
        return Review(int(cur.lastrowid), int(part_row_id), reviewer, ts, decision, line_verdict,
                      list(boxes), list(model_boxes), note)

    def latest(self) -> dict[int, Review]:
        """The current decision per archive row (the latest one)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM reviews WHERE id IN (SELECT MAX(id) FROM reviews GROUP BY part_row_id)").fetchall()
        return {int(r["part_row_id"]): _review(r) for r in rows}

    def history(self, part_row_id: int) -> list[Review]:
        with self._lock:
            rows = self._conn.execute("SELECT * FROM reviews WHERE part_row_id = ? ORDER BY id",
                                      (int(part_row_id),)).fetchall()
        return [_review(r) for r in rows]

    # ---- labels on images outside the archive ----
    def add_label(self, image: Path, sha256: str, width: int, height: int, reviewer: str,
                  boxes: Sequence[dict[str, Any]]) -> ImageLabel:
        reviewer = reviewer.strip()
        if not reviewer:
            raise QAError("reviewer name is empty; type your name in the 'Reviewer' box (or log in) before saving")
        ts = utc_now()
        with self._lock, self._conn:
            cur = self._conn.execute(
                "INSERT INTO labels (image, image_sha256, width, height, reviewer, ts_utc, boxes) VALUES (?,?,?,?,?,?,?)",
                (str(image), sha256, int(width), int(height), reviewer, ts, json.dumps(list(boxes))))
        return ImageLabel(int(cur.lastrowid), str(image), sha256, width, height, reviewer, ts, list(boxes))

    def latest_labels(self) -> list[ImageLabel]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM labels WHERE id IN (SELECT MAX(id) FROM labels GROUP BY image) ORDER BY id").fetchall()
        return [ImageLabel(int(r["id"]), r["image"], r["image_sha256"], int(r["width"]), int(r["height"]),
                           r["reviewer"], r["ts_utc"], json.loads(r["boxes"])) for r in rows]


def _review(r: sqlite3.Row) -> Review:
    return Review(int(r["id"]), int(r["part_row_id"]), r["reviewer"], r["ts_utc"], Decision(r["decision"]),
                  r["line_verdict"], json.loads(r["boxes"]), json.loads(r["model_boxes"]), r["note"])
