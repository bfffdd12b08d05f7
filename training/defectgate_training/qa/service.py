"""Everything the web UI does, without the web: a QAService owns the archive reader, the review
store, the optional pre-labeler and the label folders. ui.py only wires gradio events to these
methods, so the logic is tested directly and the browser tests only check the wiring."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import charts
from .archive_reader import ArchiveReader, Filters, PartRow
from .boxes import annotator_to_boxes, records_to_annotator
from .decisions import Decision, check_decision
from .errors import QAError
from .export import ExportResult, export_increment
from .images import bgr_to_rgb, file_sha256, read_bgr
from .labeling import LabelFolders, read_labels, write_labels
from .prelabel import Prelabeler
from .quality import QualityReport, Shifts, build_report
from .store import Review, ReviewStore

log = logging.getLogger(__name__)

REVIEW_STATUSES = ("unreviewed", "reviewed", "all")


@dataclass
class QAConfig:
    archive: Path
    bundle: Path | None = None
    reviews: Path | None = None  # default <archive>/reviews.sqlite
    exports: Path | None = None  # default <archive>/../qa-exports
    label_dirs: list[Path] = field(default_factory=list)
    shifts: Shifts = field(default_factory=Shifts)
    suggest_conf: float | None = None  # None: the bundle's per-class thresholds; a number lowers them to it
    val_fraction: float = 0.0  # share of exported images (chosen by hash) that go to the increment's val split


@dataclass
class ItemView:
    part: PartRow
    image_rgb: np.ndarray
    boxes: list[dict[str, Any]]  # annotator boxes
    review: Review | None

    def info_markdown(self) -> str:
        p = self.part
        dets = ", ".join(f"{d.get('class')} {float(d.get('confidence', 0)):.2f}" for d in p.detections) or "none"
        lines = [f"**Part {p.part_id}** (row {p.id}, run `{p.run_id}`, station `{p.station}`)  ",
                 f"line verdict **{p.verdict}**{' (fail-safe)' if p.failsafe else ''} at {p.ts_utc}  ",
                 f"reasons: {', '.join(p.reasons) or 'none'}  ",
                 f"detections: {dets}  ", f"model `{p.model_version}`"]
        if p.shadow is not None:
            sh = p.shadow
            cand = ", ".join(f"{d.get('class')} {float(d.get('confidence', 0)):.2f}" for d in sh.detections) or "none"
            agree = "agrees" if not p.disagrees else "**disagrees**"
            lines.append(f"  \ncandidate `{sh.model_version}` (shadow) says **{sh.verdict}**, {agree}: {cand}  ")
            if p.disagrees and p.verdict == "OK":
                lines.append("boxes shown are the candidate's: keep them for *Missed defect*, or choose *Correct pass*")
        if self.review:
            r = self.review
            lines.append(f"  \nreviewed: **{r.decision.label}** by {r.reviewer} at {r.ts_utc}")
        return "\n".join(lines)


class QAService:
    def __init__(self, cfg: QAConfig):
        self.cfg = cfg
        self.archive = ArchiveReader(cfg.archive)
        self.prelabeler = Prelabeler(cfg.bundle) if cfg.bundle else None
        archive_classes = self.archive.classes()
        if self.prelabeler:
            self.classes = self.prelabeler.classes  # the export's class order is the model's
            if archive_classes and set(archive_classes) != set(self.classes):
                raise QAError(f"archive {self.archive.root} was written with classes {archive_classes} but the "
                              f"bundle {cfg.bundle} has {self.classes}; pass the bundle the station ran")
        else:
            self.classes = archive_classes
        if not self.classes:
            raise QAError(f"{self.archive.db_path}: meta 'classes' is missing; pass --bundle so the app knows the classes")
        self.store = ReviewStore(cfg.reviews or self.archive.root / "reviews.sqlite")
        self.exports = Path(cfg.exports or self.archive.root.parent / "qa-exports").resolve()
        self.folders = LabelFolders(cfg.label_dirs)

    # ---- review queue ----
    def queue(self, filters: Filters, status: str = "unreviewed") -> tuple[list[PartRow], dict[int, Review]]:
        if status not in REVIEW_STATUSES:
            raise QAError(f"review status {status!r} is unknown; use one of {', '.join(REVIEW_STATUSES)}")
        reviews = self.store.latest()
        skip = {"unreviewed": lambda p: p.id in reviews, "reviewed": lambda p: p.id not in reviews}.get(status)
        return self.archive.query(filters, skip), reviews

    def item(self, row_id: int) -> ItemView:
        part = self.archive.get(row_id)
        img = read_bgr(self.archive.image_file(part))
        review = self.store.latest().get(part.id)
        # show the reviewer's boxes if this part was already reviewed, else the line's detections; a part the
        # line passed and the candidate rejects shows the candidate's, which a "missed defect" needs
        records = part.detections
        if part.disagrees and part.verdict == "OK":
            records = part.shadow.detections  # type: ignore[union-attr]
        if review and review.decision.reviewer_ng:
            records = review.boxes
        return ItemView(part, bgr_to_rgb(img), records_to_annotator(records, self.classes), review)

    def decide(self, row_id: int, decision: Decision, annotator_boxes: Sequence[dict[str, Any]] | None,
               reviewer: str, note: str = "") -> Review:
        part = self.archive.get(row_id)
        img = read_bgr(self.archive.image_file(part))
        h, w = img.shape[:2]
        boxes = annotator_to_boxes(annotator_boxes, self.classes, w, h) if decision.reviewer_ng else []
        check_decision(decision, part.verdict, len(boxes), f"part {part.part_id} (row {part.id})")
        review = self.store.add_review(part.id, reviewer, decision, part.verdict, boxes, part.detections, note)
        log.info("review: row %s part %s -> %s by %s (%d boxes)", part.id, part.part_id, decision.value,
                 review.reviewer, len(boxes))
        return review

    def suggest_for_part(self, row_id: int) -> list[dict[str, Any]]:
        part = self.archive.get(row_id)
        return self._suggest(read_bgr(self.archive.image_file(part)))

    def _suggest(self, img: np.ndarray) -> list[dict[str, Any]]:
        if self.prelabeler is None:
            raise QAError("no model bundle loaded, so there are no suggestions; start the app with --bundle DIR")
        return records_to_annotator(self.prelabeler.predict(img, self.cfg.suggest_conf), self.classes)

    # ---- labeling images from folders ----
    def folder_images(self, folder: str) -> list[str]:
        return [self.folders.display_name(p) for p in self.folders.images(folder)]

    def label_view(self, image: str, prelabel: bool = True) -> tuple[np.ndarray, list[dict[str, Any]], str]:
        path = self.folders.image(image)
        img = read_bgr(path)
        h, w = img.shape[:2]
        existing = read_labels(path, self.classes, w, h)
        if existing is not None:
            return bgr_to_rgb(img), records_to_annotator(existing, self.classes), f"{image}: {len(existing)} saved boxes"
        if prelabel and self.prelabeler is not None:
            boxes = self._suggest(img)
            return bgr_to_rgb(img), boxes, f"{image}: no labels yet; {len(boxes)} model suggestions (edit, then save)"
        return bgr_to_rgb(img), [], f"{image}: no labels yet; draw boxes, then save"

    def suggest_for_image(self, image: str) -> tuple[np.ndarray, list[dict[str, Any]]]:
        img = read_bgr(self.folders.image(image))
        return bgr_to_rgb(img), self._suggest(img)

    def save_labels(self, image: str, annotator_boxes: Sequence[dict[str, Any]] | None, reviewer: str) -> Path:
        path = self.folders.image(image)
        img = read_bgr(path)
        h, w = img.shape[:2]
        boxes = annotator_to_boxes(annotator_boxes, self.classes, w, h)
        self.store.add_label(path, file_sha256(path), w, h, reviewer, boxes)  # checks the reviewer first
        return write_labels(path, boxes, self.classes, w, h)

    # ---- export and quality ----
    def export(self, exported_by: str) -> ExportResult:
        version = self.prelabeler.version if self.prelabeler else ""
        return export_increment(self.archive, self.store, self.classes, self.exports, exported_by, version,
                                self.cfg.val_fraction)

    def quality(self) -> QualityReport:
        return build_report(self.archive.all_rows(), self.store.latest(), self.classes, self.cfg.shifts)

    def quality_charts(self, rep: QualityReport) -> list[np.ndarray]:
        return [charts.counts_chart(rep.per_day, "Parts per day"),
                charts.counts_chart(rep.per_shift, "Parts per shift"),
                charts.reasons_chart(rep.reasons),
                charts.confusion_chart(rep)]
