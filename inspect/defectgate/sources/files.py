"""`file://` sources: replay a recorded shift.

    file:///data/shift/           a folder of images (sorted by name): one image = one part
    file:///data/part_0001.png    one image
    file:///data/shift.mp4        a video: free-run frames, the tracker finds the parts

Parameters: `speed=recorded|max` (default max) — recorded paces frames at the video's own frame
rate (folders: `fps`, default 10); `fps=N`; `loop=N` replays the set N times (soak tests).
A folder replay carries ground truth when YOLO label files sit next to the images (`a.png` +
`a.txt`), where ultralytics looks for them (`images/val/a.png` -> `labels/val/a.txt`), or in a
sibling `labels/` folder: a non-empty label file means NG.

`recursive=1` takes the images below the folder too (a station archive's `images/YYYYMMDD/`).

Unreadable or corrupt images and undecodable video frames are counted in `corrupt`, named in
`unreadable` (name, why) and skipped; `names[seq]` is the file (or video frame) each frame came from."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from ..clock import Clock
from ..config import SourceSection
from ..errors import SourceError
from ..images import IMAGE_SUFFIXES, is_image, label_path_for, list_images
from ..types import Frame
from .uri import file_path, number, query

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm"}


def _truth_for(image: Path) -> dict | None:
    for label in (image.with_suffix(".txt"), label_path_for(image), image.parent.parent / "labels" / (image.stem + ".txt")):
        if label.is_file():
            lines = [ln for ln in label.read_text().splitlines() if ln.strip()]
            return {"ng": bool(lines)}
    return None


class FileSource:
    def __init__(self, cfg: SourceSection, clock: Clock):
        self.uri = cfg.uri
        q = query(cfg.uri, {"speed", "fps", "loop", "recursive"})
        self.path = file_path(cfg.uri)
        speed = q.get("speed", "max")
        if speed not in ("recorded", "max"):
            raise SourceError(f"{cfg.uri}: speed={speed!r}; allowed: recorded, max")
        self.paced = speed == "recorded"
        self.loops = number(cfg.uri, q, "loop", 1, int, low=1)
        self.clock = clock
        self.exhausted = False
        self.corrupt = 0
        self.unreadable: list[tuple[str, str]] = []  # (file or frame, why): what a replay must report
        self.names: list[str] = []  # names[seq]: where frame seq of the first pass came from
        self.frames_read = 0
        self._seq = 0
        self._loop = 0
        self._pos = 0
        self._t0: float | None = None
        self._video: cv2.VideoCapture | None = None
        self._images: list[Path] = []
        if not self.path.exists():
            raise SourceError(f"{cfg.uri}: {self.path} does not exist")
        if self.path.is_dir():
            self._images = list_images(self.path, recursive=q.get("recursive", "0") in ("1", "true", "yes"))
            if not self._images:
                raise SourceError(f"{cfg.uri}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {self.path}")
            self.fps = number(cfg.uri, q, "fps", 10.0, float, low=1e-3)
            self.kind = "folder"
        elif is_image(self.path):
            self._images = [self.path]
            self.fps = number(cfg.uri, q, "fps", 10.0, float, low=1e-3)
            self.kind = "image"
        elif self.path.suffix.lower() in VIDEO_SUFFIXES:
            self._open_video()
            native = self._video.get(cv2.CAP_PROP_FPS) or 25.0  # type: ignore[union-attr]
            self.fps = number(cfg.uri, q, "fps", native, float, low=1e-3)
            self.kind = "video"
            self.width = int(self._video.get(cv2.CAP_PROP_FRAME_WIDTH))  # type: ignore[union-attr]
        else:
            raise SourceError(f"{cfg.uri}: {self.path.suffix!r} is neither an image "
                              f"({', '.join(sorted(IMAGE_SUFFIXES))}) nor a video ({', '.join(sorted(VIDEO_SUFFIXES))})")
        self._truth = {p: _truth_for(p) for p in self._images}

    def _open_video(self) -> None:
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            raise SourceError(f"{self.uri}: OpenCV cannot open the video {self.path} (codec missing or file damaged)")
        self._video = cap

    def _pace(self, timeout: float) -> bool:
        """Recorded speed: wait for this frame's moment; False when that is beyond `timeout`."""
        now = self.clock.now()
        if self._t0 is None:
            self._t0 = now
        due = self._t0 + self._seq / self.fps
        if due - now > timeout:
            self.clock.sleep_until(now + timeout)
            return False
        self.clock.sleep_until(due)
        return True

    def read(self, timeout: float) -> Frame | None:
        if self.exhausted:
            return None
        if self.paced and not self._pace(timeout):
            return None
        if self._video is not None:
            return self._read_video()
        return self._read_image()

    def _read_image(self) -> Frame | None:
        while True:
            if self._pos >= len(self._images):
                self._loop += 1
                self._pos = 0
                if self._loop >= self.loops:
                    self.exhausted = True
                    return None
            path = self._images[self._pos]
            self._pos += 1
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None or image.size == 0:
                self.corrupt += 1
                self.unreadable.append((str(path.relative_to(self.path) if self.kind == "folder" else path.name),
                                        "unreadable or corrupt image"))
                log.warning("%s: unreadable image %s skipped", self.uri, path.name)
                continue
            name = str(path.relative_to(self.path)) if self.kind == "folder" else path.name
            return self._frame(image, part_id=self._seq, truth=self._truth.get(path), name=name)

    def _read_video(self) -> Frame | None:
        assert self._video is not None
        while True:
            ok, image = self._video.read()
            if not ok:
                self._loop += 1
                if self._loop >= self.loops:
                    self.exhausted = True
                    return None
                self._video.release()
                self._open_video()
                continue
            if image is None or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                self.corrupt += 1
                self.unreadable.append((f"frame after {self._seq}", "undecodable video frame"))
                continue
            return self._frame(image, part_id=None, truth=None, name=f"frame{self._seq}")

    def _frame(self, image: np.ndarray, part_id: int | None, truth: dict | None, name: str) -> Frame:
        frame = Frame(image=image, t_capture=self.clock.now(), seq=self._seq, part_id=part_id, truth=truth,
                      source=f"{self.uri}#{name}")
        self._seq += 1
        self.frames_read += 1
        if self._loop == 0:  # the first pass names every frame; a soak's later loops repeat it (memory stays flat)
            self.names.append(name)
        return frame

    def close(self) -> None:
        self.exhausted = True
        if self._video is not None:
            self._video.release()
