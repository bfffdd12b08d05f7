"""Read-only view of a station archive (`parts.sqlite` + `images/`, see defectgate.archive).
The QA app never writes the line's tables: it opens the database read-only and keeps its own
decisions in a separate store (store.py)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from .errors import ArchiveError
from .paths import confine

DB_NAME = "parts.sqlite"


@dataclass(frozen=True)
class ShadowView:
    """What the candidate judging in shadow mode (or model B of a replay) said about the part."""

    model_version: str
    verdict: str
    detections: list[dict[str, Any]]
    image_path: str | None

    @property
    def classes(self) -> list[str]:
        return sorted({str(d.get("class", d.get("class_id"))) for d in self.detections})


@dataclass(frozen=True)
class PartRow:
    """One archived part as the line decided it (and, where there is one, the shadow's verdict)."""

    id: int
    run_id: str
    station: str
    part_id: int
    ts_utc: str
    verdict: str  # "OK" | "NG"
    reasons: list[str]
    detections: list[dict[str, Any]]  # {xyxy, confidence, class_id, class}
    model_version: str
    failsafe: bool
    truth_ng: bool | None
    image_path: str | None
    shadow: ShadowView | None = None

    @property
    def disagrees(self) -> bool:
        return self.shadow is not None and self.shadow.verdict != self.verdict

    @property
    def max_confidence(self) -> float:
        return max((float(d.get("confidence", 0.0)) for d in self.detections), default=0.0)

    @property
    def classes(self) -> list[str]:
        return sorted({str(d.get("class", d.get("class_id"))) for d in self.detections})


@dataclass
class Filters:
    """Queue filters. Dates are 'YYYY-MM-DD' or ISO timestamps compared with the archive's UTC
    times; `until` of a bare date includes that whole day."""

    verdict: str = "NG"  # "NG" | "OK" | "all"
    since: str = ""
    until: str = ""
    cls: str = ""  # a class name: the part has at least one detection of it
    model_version: str = ""
    min_conf: float = 0.0
    max_conf: float = 1.0
    with_image: bool = True  # only parts whose image was kept (the rest cannot be reviewed)
    limit: int = 500
    # "all" parts, only the "disagreements" of the live model and the shadow candidate, or the
    # "unconfirmed" rejects (fired, but the confirm sensor did not see the part: line_events)
    queue: str = "all"


QUEUES = ("all", "disagreements", "unconfirmed")
_UNCONFIRMED = ("EXISTS (SELECT 1 FROM line_events e WHERE e.run_id = parts.run_id AND e.part_id = parts.part_id "
                "AND e.kind = 'reject_unconfirmed')")
# the latest shadow row of each part (a replay or a restarted shadow may judge a part twice)
_SHADOW_JOIN = ("LEFT JOIN shadow s ON s.id = (SELECT MAX(id) FROM shadow WHERE shadow.run_id = parts.run_id "
                "AND shadow.part_id = parts.part_id)")
_SELECT = ("SELECT parts.*, s.model_version AS s_version, s.verdict AS s_verdict, s.detections AS s_detections, "
           "s.image_path AS s_image FROM parts ")


class ArchiveReader:
    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self.db_path = self.root / DB_NAME
        if not self.root.is_dir():
            raise ArchiveError(f"{self.root}: station archive folder not found; run 'make demo' to produce one, "
                               "or pass --archive with a station's archive folder (it holds parts.sqlite and images/)")
        if not self.db_path.is_file():
            raise ArchiveError(f"{self.root}: no {DB_NAME} in this folder, so it is not a station archive; "
                               "pass --archive with the folder a station wrote (station.run_dir/archive)")
        try:
            with self._connect() as conn:
                conn.execute("SELECT id FROM parts LIMIT 1").fetchall()
                self.has_shadow, self.has_line_events = (conn.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (t,)).fetchone() is not None
                    for t in ("shadow", "line_events"))
        except sqlite3.Error as exc:
            raise ArchiveError(f"{self.db_path}: cannot read the parts table ({exc})") from exc
        self._from = _SELECT + (_SHADOW_JOIN if self.has_shadow else "LEFT JOIN (SELECT NULL AS model_version, "
                                "NULL AS verdict, NULL AS detections, NULL AS image_path) s ON 0")

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        try:
            yield conn
        finally:
            conn.close()

    # ---- facts about the archive ----
    def classes(self) -> list[str]:
        with self._connect() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'classes'").fetchone()
        if row is None:
            return []
        try:
            names = json.loads(row["value"])
        except json.JSONDecodeError as exc:
            raise ArchiveError(f"{self.db_path}: meta 'classes' is not a JSON list ({exc})") from exc
        return [str(n) for n in names]

    def count(self) -> int:
        with self._connect() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM parts").fetchone()[0])

    def model_versions(self) -> list[str]:
        with self._connect() as conn:
            return [r[0] for r in conn.execute("SELECT DISTINCT model_version FROM parts ORDER BY 1")]

    def empty_message(self) -> str | None:
        """A sentence for the UI when there is nothing to review, else None."""
        if self.count() == 0:
            return (f"The archive {self.root} has no parts yet. Run the station (or 'make demo') "
                    "and reload this page.")
        return None

    # ---- rows ----
    def get(self, row_id: int) -> PartRow:
        with self._connect() as conn:
            row = conn.execute(self._from + " WHERE parts.id = ?", (int(row_id),)).fetchone()
        if row is None:
            raise ArchiveError(f"{self.db_path}: no part with row id {row_id}")
        return _to_part(row)

    def get_many(self, row_ids: Sequence[int]) -> dict[int, PartRow]:
        out: dict[int, PartRow] = {}
        ids = [int(i) for i in row_ids]
        with self._connect() as conn:
            for start in range(0, len(ids), 500):  # SQLite's variable limit
                chunk = ids[start:start + 500]
                marks = ",".join("?" * len(chunk))
                for r in conn.execute(self._from + f" WHERE parts.id IN ({marks})", chunk):
                    out[int(r["id"])] = _to_part(r)
        return out

    def all_rows(self) -> list[PartRow]:
        with self._connect() as conn:
            return [_to_part(r) for r in conn.execute(self._from + " ORDER BY parts.id")]

    def query(self, f: Filters, skip: Callable[[PartRow], bool] | None = None) -> list[PartRow]:
        """Parts matching the filters, oldest first, at most f.limit of them; `skip` drops parts
        before the limit counts them (e.g. the already reviewed ones)."""
        where, args = [], []
        if f.queue not in QUEUES:
            raise ArchiveError(f"queue {f.queue!r} is unknown; use one of {', '.join(QUEUES)}")
        if f.queue == "disagreements":
            if not self.has_shadow:
                raise ArchiveError(f"{self.db_path}: no shadow verdicts in this archive, so no disagreements; run the "
                                   "station with shadow.bundle set, or 'defectgate replay --models A B'")
            where.append("s.verdict IS NOT NULL AND s.verdict != parts.verdict")
        if f.queue == "unconfirmed":
            if not self.has_line_events:
                raise ArchiveError(f"{self.db_path}: no line events in this archive (written before the line link, "
                                   "schema 1), so no unconfirmed rejects; a station with line.confirm records them")
            where.append(_UNCONFIRMED)
        if f.verdict in ("OK", "NG"):
            where.append("parts.verdict = ?")
            args.append(f.verdict)
        elif f.verdict != "all":
            raise ArchiveError(f"verdict filter {f.verdict!r} is unknown; use NG, OK or all")
        if f.since.strip():
            where.append("parts.ts_utc >= ?")
            args.append(_timestamp(f.since, "From"))
        if f.until.strip():
            until = _timestamp(f.until, "To")
            if len(until) == 10:  # a bare date: include the whole day
                until += "T99"
            where.append("parts.ts_utc <= ?")
            args.append(until)
        if f.with_image:
            where.append("(parts.image_path IS NOT NULL OR s.image_path IS NOT NULL)")
        if f.model_version:
            where.append("parts.model_version = ?")
            args.append(f.model_version)
        sql = self._from + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY parts.id"
        out: list[PartRow] = []
        with self._connect() as conn:
            for r in conn.execute(sql, args):
                part = _to_part(r)
                if f.cls and f.cls not in part.classes:
                    continue
                # confidence filters apply to parts with detections; an OK part without any has 0
                if not f.min_conf <= part.max_confidence <= f.max_conf:
                    continue
                if skip is not None and skip(part):
                    continue
                out.append(part)
                if len(out) >= f.limit:
                    break
        return out

    def image_file(self, part: PartRow) -> Path:
        """The part's image on disk, confined to the archive folder (a row cannot point at
        /etc/passwd or ../ even if the database was edited)."""
        rel = part.image_path or (part.shadow.image_path if part.shadow else None)  # a disagreement keeps one there
        if not rel:
            raise ArchiveError(f"part row {part.id} has no image (the station did not keep it, or dropped it)")
        path = confine(rel, [self.root], what=f"image of part row {part.id}")
        if not path.is_file():
            raise ArchiveError(f"{path}: image of part row {part.id} is missing from the archive")
        return path


def _timestamp(text: str, name: str) -> str:
    """A date or date-time typed by a person -> the archive's ISO form (UTC), or a clear error."""
    text = text.strip().replace(" ", "T")
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ArchiveError(f"{name} {text!r} is not a date or time; write e.g. 2026-11-24 or 2026-11-24T18:00") from None
    if len(text) == 10:
        return text
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return parsed.isoformat()


def _to_part(r: sqlite3.Row) -> PartRow:
    truth = r["truth_ng"]
    return PartRow(
        id=int(r["id"]), run_id=r["run_id"], station=r["station"], part_id=int(r["part_id"]),
        ts_utc=r["ts_utc"], verdict=r["verdict"], reasons=list(json.loads(r["reasons"] or "[]")),
        detections=list(json.loads(r["detections"] or "[]")), model_version=r["model_version"],
        failsafe=bool(r["failsafe"]), truth_ng=None if truth is None else bool(truth), image_path=r["image_path"],
        shadow=None if r["s_verdict"] is None else ShadowView(
            r["s_version"], r["s_verdict"], list(json.loads(r["s_detections"] or "[]")), r["s_image"]),
    )
