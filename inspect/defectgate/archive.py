"""The station's record: one SQLite (WAL) row per part and NG images on disk, written by a
background worker behind a bounded queue. The line never waits for the disk: when the queue is
full, or the image quota or the disk is exhausted, images are dropped and counted; result rows are
small and are always kept (they queue separately). The QA app reads this archive; it never writes
the `parts` table.

Layout of an archive folder:
    parts.sqlite            tables `parts`, `fires`, `runs`, `meta`, `shadow`, `line_events` (schema below)
    images/YYYYMMDD/<run>_<part>_<OK|NG>.jpg
    images/YYYYMMDD/<run>_<part>_<OK|NG>_shadow.jpg   a disagreement the live row kept no image of

`shadow`: what a candidate model judging the same parts in shadow mode (shadow.py), or model B of
`defectgate replay --models A B`, said about each part; joined to its live row by (run_id, part_id).

`line_events` (schema 2, issue #23): what the line link reported after the part's row was written
(result delivered to the PLC or not, reject confirmed or not) and line-level events (trigger overruns,
line stop, timing process restarts); append-only, joined by (run_id, part_id). An archive of schema 1
gains the table when a station opens it; a reader finds no such table in an archive nobody upgraded.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import logging
import queue
import shutil
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from .types import Verdict

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 2: line_events
SCHEMA = """
CREATE TABLE IF NOT EXISTS parts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id        TEXT    NOT NULL,
    station       TEXT    NOT NULL,
    part_id       INTEGER NOT NULL,
    ts_utc        TEXT    NOT NULL,            -- ISO 8601 wall time of the decision, for people
    t_capture     REAL    NOT NULL,            -- station monotonic clock, seconds
    verdict       TEXT    NOT NULL CHECK (verdict IN ('OK', 'NG')),
    reasons       TEXT    NOT NULL,            -- JSON list of strings
    detections    TEXT    NOT NULL,            -- JSON list of {xyxy, confidence, class_id, class}
    model_version TEXT    NOT NULL,
    latency_ms    REAL    NOT NULL,            -- capture to verdict
    failsafe      INTEGER NOT NULL DEFAULT 0,  -- rejected because it could not be judged in time
    truth_ng      INTEGER,                     -- ground truth when the source knows it, else NULL
    image_path    TEXT,                        -- relative to the archive folder; NULL if not kept
    image_dropped INTEGER NOT NULL DEFAULT 0   -- 1 when the image was dropped (queue, quota, disk)
);
CREATE INDEX IF NOT EXISTS parts_ts ON parts (ts_utc);
CREATE INDEX IF NOT EXISTS parts_verdict ON parts (verdict);
CREATE TABLE IF NOT EXISTS fires (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id    TEXT    NOT NULL,
    part_id   INTEGER NOT NULL,
    due       REAL    NOT NULL,                -- monotonic time the pulse was due
    fired     REAL,                            -- monotonic time it was fired (NULL: failed)
    error     TEXT                             -- actuator error message, if any
);
CREATE TABLE IF NOT EXISTS shadow (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id        TEXT    NOT NULL,
    part_id       INTEGER NOT NULL,            -- the live row is parts (run_id, part_id)
    ts_utc        TEXT    NOT NULL,
    model_version TEXT    NOT NULL,            -- the candidate that judged it (never actuates)
    verdict       TEXT    NOT NULL CHECK (verdict IN ('OK', 'NG')),
    live_verdict  TEXT    NOT NULL CHECK (live_verdict IN ('OK', 'NG')),
    reasons       TEXT    NOT NULL,
    detections    TEXT    NOT NULL,
    latency_ms    REAL    NOT NULL,            -- capture to the candidate's verdict
    image_path    TEXT                         -- a disagreement whose live row keeps no image keeps it here
);
CREATE INDEX IF NOT EXISTS shadow_part ON shadow (run_id, part_id);
CREATE TABLE IF NOT EXISTS line_events (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id         TEXT    NOT NULL,
    part_id        INTEGER,                    -- NULL: a line-level event
    acquisition_id INTEGER,                    -- the PLC's ID for the part, where the link knows it
    kind           TEXT    NOT NULL,           -- defectgate.line.events.EventKind
    detail         TEXT    NOT NULL DEFAULT '',
    t              REAL    NOT NULL,           -- station monotonic clock, seconds
    ts_utc         TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS line_events_part ON line_events (run_id, part_id);
CREATE INDEX IF NOT EXISTS line_events_kind ON line_events (kind);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id        TEXT PRIMARY KEY,
    station       TEXT NOT NULL,
    started_utc   TEXT NOT NULL,
    ended_utc     TEXT,                        -- NULL: still running, or the process was killed
    model_version TEXT NOT NULL,
    backend       TEXT NOT NULL,
    config        TEXT NOT NULL,               -- the effective station config, JSON
    report        TEXT                         -- the line report, JSON, written at a clean stop
);
"""


def _check_schema(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse an archive written by a newer station: its rows may not mean what ours would."""
    has_meta = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() if has_meta else None
    if row is not None and int(row[0]) > SCHEMA_VERSION:
        from .errors import ConfigError

        conn.close()
        raise ConfigError(f"{path}: archive schema {row[0]} is newer than this station's ({SCHEMA_VERSION}); "
                          "upgrade defectgate, or point station.run_dir at another folder")


def _utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    else:
        conn = sqlite3.connect(path, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process kill
    conn.row_factory = sqlite3.Row
    return conn


@dataclass
class ArchiveStats:
    rows: int = 0
    images: int = 0
    images_dropped: int = 0
    bytes_written: int = 0
    write_errors: int = 0
    shadow_rows: int = 0
    line_events: int = 0


@dataclass
class _Item:
    verdict: Verdict
    image: np.ndarray | None
    ts_utc: str
    live: Verdict | None = None  # set for a shadow row: the live verdict of the same part


class Archive:
    def __init__(self, root: Path, run_id: str, station: str, classes: Sequence[str],
                 save_ng_images: bool = True, ok_sample_rate: float = 0.0, queue_size: int = 256,
                 quota_mb: float = 2048.0, image_format: str = "jpg", min_free_mb: float = 200.0):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "images").mkdir(exist_ok=True)
        self.db_path = self.root / "parts.sqlite"
        self.run_id, self.station, self.classes = run_id, station, list(classes)
        self.save_ng_images, self.ok_sample_rate = save_ng_images, ok_sample_rate
        self.quota_bytes = int(quota_mb * 1e6)
        self.min_free_bytes = int(min_free_mb * 1e6)
        self.image_format = image_format
        self.stats = ArchiveStats()
        self._images: queue.Queue[_Item | None] = queue.Queue(maxsize=queue_size)
        self._rows: collections.deque[_Item] = collections.deque()  # rows without images, never dropped
        self._fires: collections.deque[tuple] = collections.deque()
        self._line_events: collections.deque[tuple] = collections.deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._ok_counter = 0.0
        self._db_lock = threading.Lock()
        self._end: tuple[str, str] | None = None
        self._used_bytes = self._measure_images()
        conn = connect(self.db_path)
        _check_schema(conn, self.db_path)
        conn.executescript(SCHEMA)  # an older archive gains the newer tables (all IF NOT EXISTS)
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('classes', ?)", (json.dumps(self.classes),))
        conn.commit()
        self._conn = conn
        self._thread = threading.Thread(target=self._worker, name="archive", daemon=True)
        self._thread.start()

    # ---- producer side (line threads): never blocks ----
    def submit(self, verdict: Verdict, image: np.ndarray | None) -> None:
        self._queue(_Item(verdict, image if self._keep_image(verdict) else None, _utc_now()))

    def submit_shadow(self, verdict: Verdict, live: Verdict, image: np.ndarray | None) -> None:
        """A candidate's verdict on a part the live model judged. Its image is kept when the two disagree
        and the live row keeps none (a live OK part), so that a reviewer can settle the disagreement."""
        disagree = verdict.is_ng != live.is_ng
        keep = disagree and not (live.is_ng and self.save_ng_images)
        self._queue(_Item(verdict, image if keep else None, _utc_now(), live=live))

    def _queue(self, item: _Item) -> None:
        if item.image is None:
            self._rows.append(item)
        else:
            try:
                self._images.put_nowait(item)
            except queue.Full:
                item.image = None
                self._mark_dropped(item)
                self.stats.images_dropped += 1
                self._rows.append(item)
        self._wake.set()

    def record_fire(self, part_id: int, due: float, fired: float | None, error: str | None = None) -> None:
        self._fires.append((self.run_id, part_id, due, fired, error))
        self._wake.set()

    def record_line_event(self, part_id: int | None, acquisition_id: int | None, kind: str, detail: str,
                          t: float) -> None:
        """What the line link said about a part (or the line) after its row was queued."""
        self._line_events.append((self.run_id, part_id, acquisition_id, kind, detail, t, _utc_now()))
        self._wake.set()

    def start_run(self, model_version: str, backend: str, config_json: str) -> None:
        """One `runs` row per station start (written synchronously: it happens once)."""
        with self._db_lock, self._conn:
            self._conn.execute(
                "INSERT OR REPLACE INTO runs (run_id, station, started_utc, model_version, backend, config)"
                " VALUES (?,?,?,?,?,?)",
                (self.run_id, self.station, dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                 model_version, backend, config_json))

    def end_run(self, report: dict) -> None:
        """Called after the line stopped and before close(): the queue is flushed by close()."""
        self._end = (dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), json.dumps(report))

    def close(self, timeout: float = 10.0) -> None:
        """Flush everything queued, then stop the worker."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        if self._end is not None:
            try:
                with self._db_lock, self._conn:
                    self._conn.execute("UPDATE runs SET ended_utc = ?, report = ? WHERE run_id = ?",
                                       (*self._end, self.run_id))
            except sqlite3.Error as exc:
                log.error("archive: could not close the run row: %s", exc)
        self._conn.close()

    # ---- worker side ----
    def _keep_image(self, verdict: Verdict) -> bool:
        if verdict.is_ng:
            return self.save_ng_images
        self._ok_counter += self.ok_sample_rate
        if self._ok_counter >= 1.0:
            self._ok_counter -= 1.0
            return True
        return False

    @staticmethod
    def _mark_dropped(item: _Item) -> None:
        item.dropped = True  # type: ignore[attr-defined]

    def _worker(self) -> None:
        while True:
            self._wake.wait(0.2)
            self._wake.clear()
            batch: list[_Item] = []
            while self._rows:
                batch.append(self._rows.popleft())
            while True:
                try:
                    item = self._images.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    self._write_image(item)
                    batch.append(item)
            fires, events = [], []
            while self._fires:
                fires.append(self._fires.popleft())
            while self._line_events:
                events.append(self._line_events.popleft())
            if batch or fires or events:
                self._write_rows(batch, fires, events)
            if self._stop.is_set() and not self._rows and self._images.empty() and not self._fires \
                    and not self._line_events:
                return

    def _write_image(self, item: _Item) -> None:
        v = item.verdict
        if self._used_bytes >= self.quota_bytes or self._disk_free() < self.min_free_bytes:
            item.image = None
            self._mark_dropped(item)
            self.stats.images_dropped += 1
            return
        day = item.ts_utc[:10].replace("-", "")
        tag = "_shadow" if item.live is not None else ""
        rel = Path("images") / day / f"{self.run_id}_{v.part_id:06d}_{v.outcome.value}{tag}.{self.image_format}"
        dst = self.root / rel
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            ok, buf = cv2.imencode(f".{self.image_format}", item.image)
            if not ok:
                raise OSError("image encoding failed")
            tmp = dst.with_suffix(dst.suffix + ".tmp")
            tmp.write_bytes(buf.tobytes())
            tmp.replace(dst)
        except OSError as exc:  # full disk, permissions, a pulled USB stick: drop, count, go on
            log.warning("archive: dropped image for part %s: %s", v.part_id, exc)
            item.image = None
            self._mark_dropped(item)
            self.stats.images_dropped += 1
            self.stats.write_errors += 1
            return
        item.image_path = str(rel)  # type: ignore[attr-defined]
        self._used_bytes += len(buf)
        self.stats.bytes_written += len(buf)
        self.stats.images += 1

    def _write_rows(self, batch: list[_Item], fires: list[tuple], events: list[tuple] = ()) -> None:
        rows, shadow = [], []
        for item in batch:
            v = item.verdict
            if item.live is not None:
                shadow.append((
                    self.run_id, v.part_id, item.ts_utc, v.model_version, v.outcome.value, item.live.outcome.value,
                    json.dumps(v.reasons), json.dumps(v.detections.to_records(self.classes)), round(v.latency_ms, 3),
                    getattr(item, "image_path", None)))
                continue
            rows.append((
                self.run_id, self.station, v.part_id, item.ts_utc, v.t_capture, v.outcome.value,
                json.dumps(v.reasons), json.dumps(v.detections.to_records(v.class_names or self.classes)), v.model_version,
                round(v.latency_ms, 3), int(v.failsafe), None if v.truth_ng is None else int(v.truth_ng),
                getattr(item, "image_path", None), int(getattr(item, "dropped", False)),
            ))
        try:
            with self._db_lock, self._conn:
                self._conn.executemany(
                    "INSERT INTO parts (run_id, station, part_id, ts_utc, t_capture, verdict, reasons, detections,"
                    " model_version, latency_ms, failsafe, truth_ng, image_path, image_dropped)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
                self._conn.executemany(
                    "INSERT INTO fires (run_id, part_id, due, fired, error) VALUES (?,?,?,?,?)", fires)
                self._conn.executemany(
                    "INSERT INTO shadow (run_id, part_id, ts_utc, model_version, verdict, live_verdict, reasons,"
                    " detections, latency_ms, image_path) VALUES (?,?,?,?,?,?,?,?,?,?)", shadow)
                self._conn.executemany(
                    "INSERT INTO line_events (run_id, part_id, acquisition_id, kind, detail, t, ts_utc)"
                    " VALUES (?,?,?,?,?,?,?)", events)
            self.stats.rows += len(rows)
            self.stats.shadow_rows += len(shadow)
            self.stats.line_events += len(events)
        except sqlite3.Error as exc:
            # keep the rows and try again on the next wake-up rather than lose them
            log.error("archive: SQLite write failed (%s); will retry %d rows", exc, len(rows))
            self.stats.write_errors += 1
            for item in batch:
                item.image = None
                self._rows.appendleft(item)
            self._fires.extendleft(reversed(fires))
            self._line_events.extendleft(reversed(list(events)))
            self._stop.wait(0.5)

    def _disk_free(self) -> int:
        try:
            return shutil.disk_usage(self.root).free
        except OSError:
            return 0

    def _measure_images(self) -> int:
        return sum(p.stat().st_size for p in (self.root / "images").rglob("*") if p.is_file())
