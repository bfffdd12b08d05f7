"""Reject timing. Fail-safe by construction: every part is *armed* for rejection the moment it is
captured, and only an OK verdict that arrives before the part's decision deadline cancels the
reject. A part whose verdict is late, whose frame was dropped, or whose inference failed is
therefore rejected without any extra code path, and the late ones are counted.

Geometry: the belt moves at `belt_speed_mm_s`; the ejector is `camera_to_ejector_mm` downstream of
the camera's optical axis. A part captured `offset_mm` past the axis reaches the ejector after
(camera_to_ejector_mm - offset_mm) / speed seconds; the pulse is centred on that moment.
"""

from __future__ import annotations

import heapq
import threading
from dataclasses import dataclass

from .types import RejectCommand


@dataclass
class _Armed:
    command: RejectCommand
    decide_by: float
    cancelled: bool = False
    resolved: bool = False


class RejectScheduler:
    def __init__(self, belt_speed_mm_s: float, camera_to_ejector_mm: float, pulse_s: float,
                 decision_margin_s: float = 0.005):
        self.speed = belt_speed_mm_s
        self.distance = camera_to_ejector_mm
        self.pulse_s = pulse_s
        self.margin = decision_margin_s
        self._parts: dict[int, _Armed] = {}
        self._heap: list[tuple[float, int]] = []
        self._lock = threading.Lock()
        self.changed = threading.Event()  # set when the earliest due time may have moved
        self.late_decisions = 0

    def fire_time(self, t_capture: float, offset_mm: float = 0.0) -> float:
        return t_capture + (self.distance - offset_mm) / self.speed - self.pulse_s / 2

    def arm(self, part_id: int, t_capture: float, offset_mm: float = 0.0, reason: str = "unjudged") -> RejectCommand:
        """Called at capture: the part will be rejected unless an OK verdict cancels it in time."""
        fire_at = self.fire_time(t_capture, offset_mm)
        cmd = RejectCommand(part_id, fire_at, self.pulse_s, deadline=fire_at + self.pulse_s / 2, reason=reason)
        with self._lock:
            if part_id in self._parts:  # the same part seen again (free-run): keep the first arming
                return self._parts[part_id].command
            self._parts[part_id] = _Armed(cmd, decide_by=fire_at - self.margin)
            heapq.heappush(self._heap, (fire_at, part_id))
        self.changed.set()
        return cmd

    def resolve(self, part_id: int, reject: bool, now: float) -> bool:
        """Apply a verdict. Returns True when it came in time to count; False when it was late (the
        pre-armed reject stands, whatever the verdict)."""
        with self._lock:
            armed = self._parts.get(part_id)
            if armed is None or armed.resolved:
                return armed is not None and now <= armed.decide_by
            armed.resolved = True
            if now > armed.decide_by:
                self.late_decisions += 1
                return False
            if not reject:
                armed.cancelled = True
        self.changed.set()
        return True

    def next_due(self) -> float | None:
        with self._lock:
            self._drop_cancelled_head()
            return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[RejectCommand]:
        """Commands whose fire time has come, in order; cancelled parts are skipped."""
        due = []
        with self._lock:
            while self._heap and self._heap[0][0] <= now:
                _, part_id = heapq.heappop(self._heap)
                armed = self._parts.pop(part_id, None)
                if armed is not None and not armed.cancelled:
                    due.append(armed.command)
            self._drop_cancelled_head()
        return due

    def pending(self) -> int:
        with self._lock:
            return sum(1 for a in self._parts.values() if not a.cancelled)

    def _drop_cancelled_head(self) -> None:
        while self._heap and (self._heap[0][1] not in self._parts or self._parts[self._heap[0][1]].cancelled):
            _, part_id = heapq.heappop(self._heap)
            self._parts.pop(part_id, None)
