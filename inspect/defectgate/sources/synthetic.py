"""`synthetic://conveyor?parts=N&seed=S&ng_rate=R&width=W&height=H&realtime=1`: a simulated
conveyor. Parts arrive at the camera every part_pitch / belt_speed seconds (a photo-eye trigger),
each rendered by synthparts with its own seed, so every part has a ground-truth OK/NG. With
realtime=0 frames come as fast as they are read (for benchmarks), timestamps still on the clock."""

from __future__ import annotations

import numpy as np

from .. import synthparts
from ..clock import Clock
from ..errors import SourceError
from ..types import Frame
from .uri import number, query


def _belt_params(source, uri: str, default_parts: int, extra: set[str] = set()) -> dict[str, str]:
    """The query both conveyors take, checked and set on `source`: parts, seed, ng_rate, height and
    width of the frame, realtime. Returns the query for the caller's own `extra` keys."""
    q = query(uri, {"mode", "parts", "seed", "ng_rate", "width", "height", "realtime", *extra})
    source.parts = number(uri, q, "parts", default_parts, int, low=1)
    source.seed = number(uri, q, "seed", 0, int)
    source.ng_rate = number(uri, q, "ng_rate", 0.4, float, low=0)
    if source.ng_rate > 1:
        raise SourceError(f"{uri}: parameter ng_rate={source.ng_rate} must be within 0..1")
    source.hw = (number(uri, q, "height", 240, int), number(uri, q, "width", 320, int))
    source.realtime = q.get("realtime", "1") not in ("0", "false", "no")
    return q


class SyntheticConveyor:
    def __init__(self, uri: str, clock: Clock, belt_speed_mm_s: float, part_pitch_mm: float, fov_mm: float):
        self.uri = uri
        _belt_params(self, uri, default_parts=200)
        self.clock = clock
        self.speed = belt_speed_mm_s
        self.period = part_pitch_mm / belt_speed_mm_s
        self.px_per_mm = self.hw[1] / fov_mm
        self.exhausted = False
        self._next = 0
        self._t0: float | None = None

    def read(self, timeout: float) -> Frame | None:
        if self._next >= self.parts:
            self.exhausted = True
            return None
        now = self.clock.now()
        if self._t0 is None:
            self._t0 = now
        due = self._t0 + self._next * self.period
        if self.realtime and due > now:
            if due - now > timeout:
                self.clock.sleep_until(now + timeout)
                return None
            self.clock.sleep_until(due)
        part = self._next
        self._next += 1
        scene = synthparts.render_scene(self.seed * 1_000_003 + part, self.hw, self.ng_rate)
        t = self.clock.now()
        # where the part's centre is relative to the optical axis, along the belt (+x downstream)
        offset_px = float(scene.part_box[0] + scene.part_box[2]) / 2 - self.hw[1] / 2
        return Frame(
            image=scene.image, t_capture=t, seq=part, encoder_mm=(t - self._t0) * self.speed, part_id=part,
            truth={"ng": scene.ng, "offset_mm": offset_px / self.px_per_mm,
                   "boxes": scene.boxes.tolist(), "class_ids": scene.class_ids.tolist()},
            source=self.uri,
        )

    def close(self) -> None:
        self.exhausted = True


class FreeRunConveyor:
    """`synthetic://conveyor?mode=freerun&fps=30&parts=N&...`: a free-running camera over a moving
    belt. Parts sit on the belt every part_pitch_mm and travel through the field of view, so each
    part is seen in several frames (fov / (speed / fps) of them, fewer at higher belt speeds). No
    part_id on the Frame: the station's tracker must find and follow the parts. `encoder_mm` is the
    belt travel at capture, as a belt encoder would latch it. Truth lists the visible parts.

    The belt is a strip of tiles, one rendered scene per part (cached while it is in view), and
    each frame is the camera's window onto the strip at the current belt travel."""

    def __init__(self, uri: str, clock: Clock, belt_speed_mm_s: float, part_pitch_mm: float, fov_mm: float):
        self.uri = uri
        q = _belt_params(self, uri, default_parts=50, extra={"fps"})
        self.fps = number(uri, q, "fps", 30.0, float)
        if self.fps <= 0:
            raise SourceError(f"{uri}: parameter fps={self.fps} must be > 0")
        self.clock, self.speed, self.pitch, self.fov = clock, belt_speed_mm_s, part_pitch_mm, fov_mm
        h, w = self.hw
        self.px_per_mm = w / fov_mm
        self.tile_w = max(32, int(round(part_pitch_mm * self.px_per_mm)))
        rng = np.random.default_rng(self.seed)
        self._belt = np.clip(rng.normal(42, 6, (h, w, 3)), 0, 255).astype(np.uint8)
        self._tiles: dict[int, synthparts.Scene] = {}
        self.exhausted = False
        self._seq = 0
        self._t0: float | None = None

    def _u(self, k: int) -> float:
        """Belt coordinate of part k's centre (world position = u + travel; 0 = optical axis)."""
        return -(self.fov / 2 + self.pitch / 2) - k * self.pitch

    def _tile(self, k: int) -> synthparts.Scene:
        if k not in self._tiles:
            self._tiles[k] = synthparts.render_scene(self.seed * 1_000_003 + k, (self.hw[0], self.tile_w),
                                                     self.ng_rate, center_jitter=0.02)
        return self._tiles[k]

    def read(self, timeout: float) -> Frame | None:
        if self.exhausted:
            return None
        now = self.clock.now()
        if self._t0 is None:
            self._t0 = now
        if self.realtime:
            due = self._t0 + self._seq / self.fps
            if due - now > timeout:
                self.clock.sleep_until(now + timeout)
                return None
            self.clock.sleep_until(due)
        travel = self._seq / self.fps * self.speed
        if self._u(self.parts - 1) + travel - self.pitch / 2 > self.fov / 2:
            self.exhausted = True  # the last part has left the view
            return None
        h, w = self.hw
        image = self._belt.copy()
        visible = []
        for k in range(self.parts):
            centre_mm = self._u(k) + travel
            if centre_mm - self.pitch / 2 > self.fov / 2:
                self._tiles.pop(k, None)  # gone downstream
                continue
            if centre_mm + self.pitch / 2 < -self.fov / 2:
                break  # this and all later parts are still upstream
            scene = self._tile(k)
            x0 = int(round(w / 2 + (centre_mm - self.pitch / 2) * self.px_per_mm))
            a, b = max(0, x0), min(w, x0 + self.tile_w)
            if b <= a:
                continue
            image[:, a:b] = scene.image[:, a - x0:b - x0]
            box = scene.part_box + np.array([x0, 0, x0, 0], np.float32)
            visible.append({"part": k, "ng": scene.ng, "box": box.tolist(), "centre_mm": centre_mm,
                            "defects": (scene.boxes + np.array([x0, 0, x0, 0], np.float32)).tolist()})
        frame = Frame(image=image, t_capture=self.clock.now(), seq=self._seq, encoder_mm=travel,
                      truth={"parts": visible}, source=self.uri)
        self._seq += 1
        return frame

    def close(self) -> None:
        self.exhausted = True
