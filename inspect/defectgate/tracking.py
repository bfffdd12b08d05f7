"""One verdict per physical part in a free-running camera.

A free-running camera sees each part in several frames as it crosses the field of view. The
station must judge the *part*, once: reject it if a defect shows in any of its frames, fire the
ejector once, write one archive row.

1. `PartLocator` finds the parts in a frame: a part is a bright blob on the darker belt (grey
   threshold, Otsu per frame unless fixed, small-blob removal). This is the classic machine-vision
   front end; a line whose parts are darker than the belt sets `tracking.threshold` and inverts
   the image upstream, or uses a photo-eye (external trigger) instead.
2. `Tracker` associates blobs across frames by *belt position*: a part does not move on the belt,
   so its position in belt coordinates (image position in mm minus the belt travel from the
   encoder, or speed x time without one) stays put while the belt carries it through the view.
   Observations join tracks by overlap of their extents on the belt (a 1-D IoU in belt
   coordinates), which is robust to the image edges cutting entering and leaving parts.
3. A track closes when the part has left the view (or went unseen for `max_misses` frames).

The belt runs towards +x in the image (left to right): mount the camera that way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .types import Detections


class PartLocator:
    def __init__(self, min_area_frac: float = 0.01, threshold: int | None = None, min_contrast: float = 25.0):
        self.min_area_frac, self.threshold, self.min_contrast = min_area_frac, threshold, min_contrast
        self._kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Boxes (N, 4) xyxy in pixels of the parts in `image`, sorted by x."""
        grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        grey = cv2.GaussianBlur(grey, (5, 5), 0)
        if self.threshold is None:
            t, mask = cv2.threshold(grey, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
            fg, bg = grey[mask > 0], grey[mask == 0]
            # an empty belt still splits into two noise classes: demand a real brightness step
            if fg.size == 0 or bg.size == 0 or float(fg.mean()) - float(bg.mean()) < self.min_contrast:
                return np.zeros((0, 4), np.float32)
        else:
            _, mask = cv2.threshold(grey, self.threshold, 255, cv2.THRESH_BINARY)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, self._kernel)
        n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        min_area = self.min_area_frac * image.shape[0] * image.shape[1]
        blobs = sorted(([x, y, x + w, y + h, area] for x, y, w, h, area in stats[1:n]), key=lambda b: b[0])
        # one lane: blobs that overlap along the belt are one part (a part cut by the image edge or
        # by a highlight falls apart into pieces); merge them before the size filter
        merged: list[list[float]] = []
        for b in blobs:
            if merged and b[0] < merged[-1][2]:
                m = merged[-1]
                m[:5] = [min(m[0], b[0]), min(m[1], b[1]), max(m[2], b[2]), max(m[3], b[3]), m[4] + b[4]]
            else:
                merged.append(list(b))
        boxes = [b[:4] for b in merged if b[4] >= min_area]
        return np.array(boxes, np.float32).reshape(-1, 4)


@dataclass
class Track:
    """A part followed across frames. [lo, hi] is the part's visible extent in belt coordinates
    (mm; upstream end lo, downstream end hi), united over all its observations; an end is `exact`
    once it was seen inside the image rather than cut by the image edge."""

    id: int
    lo: float
    hi: float
    lo_exact: bool
    hi_exact: bool
    first_seq: int
    last_seq: int
    t_first: float
    travel_first: float
    misses: int = 0
    full_view: bool = False
    close_seq: int | None = None
    truth_ng: bool | None = None
    truth_part: int | None = None
    seqs: list[int] = field(default_factory=list)

    def centre(self) -> float:
        """Best estimate of the part centre in belt coordinates."""
        return (self.lo + self.hi) / 2


@dataclass
class TrackUpdate:
    assigned: list[tuple[int, np.ndarray]]  # (track id, part box in this frame's pixels)
    new: list[Track]
    refined: list[Track]  # first full view: a better centre for the reject timing
    closed: list[Track]


class Tracker:
    """Association in belt coordinates: an observation joins the open track whose extent it
    overlaps most (1-D IoU on the belt). When neither overlaps, it may still be the same part if
    the two facing ends are both cut by the image edges (a fast belt shows the part's front while
    entering, its back while leaving) and the gap is at most `match_tol_mm`. Exact (uncut) ends
    never bridge a gap: that is how neighbouring parts stay apart."""

    def __init__(self, width_px: int, fov_mm: float, match_tol_mm: float = 30.0, max_misses: int = 2,
                 first_id: int = 0):
        self.width = width_px
        self.px_per_mm = width_px / fov_mm
        self.fov = fov_mm
        self.tol, self.max_misses = match_tol_mm, max_misses
        self.open: dict[int, Track] = {}
        self.next_id = first_id
        self.edge_px = 2.0

    def world_mm(self, x_px: float) -> float:
        """Image x to position along the belt relative to the optical axis (+ = downstream)."""
        return (x_px - self.width / 2) / self.px_per_mm

    def update(self, boxes: np.ndarray, seq: int, t: float, travel_mm: float,
               truth_parts: list[dict] | None = None) -> TrackUpdate:
        out = TrackUpdate([], [], [], [])
        matched: set[int] = set()
        new_ids: set[int] = set()
        for box in boxes:
            x0, x1 = float(box[0]), float(box[2])
            lo_exact = x0 > self.edge_px  # else entering: the upstream end is still outside the view
            hi_exact = x1 < self.width - self.edge_px  # else leaving
            lo, hi = self.world_mm(x0) - travel_mm, self.world_mm(x1) - travel_mm
            track = self._match(lo, hi, lo_exact, hi_exact, matched)
            if track is None:
                track = Track(self.next_id, lo, hi, lo_exact, hi_exact, seq, seq, t, travel_mm)
                self.next_id += 1
                self.open[track.id] = track
                new_ids.add(track.id)
                out.new.append(track)
                if truth_parts:
                    self._attach_truth(track, box, truth_parts)
            else:
                track.lo, track.hi = min(track.lo, lo), max(track.hi, hi)
                track.lo_exact |= lo_exact
                track.hi_exact |= hi_exact
            if lo_exact and hi_exact and not track.full_view:
                track.full_view = True
                track.lo, track.hi = lo, hi  # a whole view beats a union of partial ones
                if track.id not in new_ids:
                    out.refined.append(track)
            track.last_seq, track.misses = seq, 0
            track.seqs.append(seq)
            matched.add(track.id)
            out.assigned.append((track.id, box))
        for track in list(self.open.values()):
            if track.id in matched:
                continue
            track.misses += 1
            gone = track.lo_exact and track.lo + travel_mm > self.fov / 2
            if gone or track.misses >= self.max_misses:
                out.closed.append(self._close(track, seq))
        return out

    def close_all(self, seq: int) -> list[Track]:
        return [self._close(t, seq) for t in list(self.open.values())]

    def _close(self, track: Track, seq: int) -> Track:
        track.close_seq = seq
        del self.open[track.id]
        return track

    def _match(self, lo: float, hi: float, lo_exact: bool, hi_exact: bool, taken: set[int]) -> Track | None:
        best, best_score = None, None
        for track in self.open.values():
            if track.id in taken:
                continue
            overlap = min(hi, track.hi) - max(lo, track.lo)
            if overlap > 0:
                score = overlap / max(1e-6, max(hi, track.hi) - min(lo, track.lo))  # 1-D IoU
            elif hi <= track.lo and not hi_exact and not track.lo_exact and track.lo - hi <= self.tol:
                score = -(track.lo - hi)  # leaving view of the back, entering view was the front
            elif lo >= track.hi and not lo_exact and not track.hi_exact and lo - track.hi <= self.tol:
                score = -(lo - track.hi)
            else:
                continue
            if best_score is None or score > best_score:
                best, best_score = track, score
        return best

    @staticmethod
    def _attach_truth(track: Track, box: np.ndarray, truth_parts: list[dict]) -> None:
        """Ground truth (synthetic / labelled replay only): the true part whose box overlaps most."""
        best, best_overlap = None, 0.0
        for part in truth_parts:
            tb = part["box"]
            overlap = max(0.0, min(box[2], tb[2]) - max(box[0], tb[0])) * max(0.0, min(box[3], tb[3]) - max(box[1], tb[1]))
            if overlap > best_overlap:
                best, best_overlap = part, overlap
        if best is not None:
            track.truth_ng, track.truth_part = bool(best["ng"]), int(best["part"])


def split_by_part(dets: Detections, parts: list[tuple[int, np.ndarray]], margin_px: float = 4.0
                  ) -> tuple[dict[int, Detections], int]:
    """Give each detection to the part whose box contains its centre; returns ({track: dets},
    number of detections on no part)."""
    out: dict[int, Detections] = {}
    if not len(dets):
        return out, 0
    centre = dets.center
    owner = np.full(len(dets), -1, np.int64)
    for track_id, box in parts:
        inside = ((centre[:, 0] >= box[0] - margin_px) & (centre[:, 0] <= box[2] + margin_px)
                  & (centre[:, 1] >= box[1] - margin_px) & (centre[:, 1] <= box[3] + margin_px) & (owner < 0))
        owner[inside] = track_id
        if inside.any():
            out[track_id] = dets[inside]
    return out, int((owner < 0).sum())
