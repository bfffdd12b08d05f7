"""`synthetic://conveyor?parts=N&seed=S&ng_rate=R&width=W&height=H&realtime=1`: a simulated
conveyor. Parts arrive at the camera every part_pitch / belt_speed seconds (a photo-eye trigger),
each rendered by synthparts with its own seed, so every part has a ground-truth OK/NG. With
realtime=0 frames come as fast as they are read (for benchmarks), timestamps still on the clock."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

from .. import synthparts
from ..clock import Clock
from ..errors import SourceError
from ..types import Frame


class SyntheticConveyor:
    def __init__(self, uri: str, clock: Clock, belt_speed_mm_s: float, part_pitch_mm: float, fov_mm: float):
        self.uri = uri
        parsed = urlparse(uri)
        query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        known = {"parts", "seed", "ng_rate", "width", "height", "realtime"}
        unknown = set(query) - known
        if unknown:
            raise SourceError(f"{uri}: unknown parameter(s) {sorted(unknown)}; known: {sorted(known)}")
        try:
            self.parts = int(query.get("parts", 200))
            self.seed = int(query.get("seed", 0))
            self.ng_rate = float(query.get("ng_rate", 0.4))
            self.hw = (int(query.get("height", 240)), int(query.get("width", 320)))
            self.realtime = query.get("realtime", "1") not in ("0", "false", "no")
        except ValueError as exc:
            raise SourceError(f"{uri}: bad parameter value ({exc})") from exc
        if self.parts < 1 or not 0 <= self.ng_rate <= 1:
            raise SourceError(f"{uri}: parts must be >= 1 and ng_rate within 0..1")
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
