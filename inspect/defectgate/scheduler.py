"""Reject timing. Fail-safe by construction: every part is *armed* for rejection the moment it is
captured, and only an OK verdict that arrives before the part's decision deadline cancels the
reject. A part whose verdict is late, whose frame was dropped, or whose inference failed is
therefore rejected without any extra code path, and the late ones are counted.

Geometry: the belt moves at `belt_speed_mm_s`; the ejector is `camera_to_ejector_mm` downstream of
the camera's optical axis. A part captured `offset_mm` past the axis reaches the ejector after
(camera_to_ejector_mm - offset_mm) / speed seconds; the pulse is centred on that moment.

Encoder mode (`observe_encoder` fed with belt positions): the part's fire point is a belt
*position* (encoder at capture + distance - offset); its fire time is re-estimated from the
measured belt speed every time the encoder is read, so a line that slows down or speeds up still
hits the part. Without an encoder the configured belt speed is trusted.

Fire window: the pulse is centred on the part; a command popped after its `deadline` (the timing
thread was starved, the belt stopped...) is NOT fired, because the pulse would hit the next part;
it is returned as missed so the station can count it and raise the alarm.
"""

from __future__ import annotations

import heapq
import threading
from dataclasses import dataclass, replace

from .types import RejectCommand


@dataclass
class _Armed:
    command: RejectCommand
    decide_by: float
    target_mm: float | None = None  # encoder mode: belt position at which the pulse is centred
    cancelled: bool = False
    resolved: bool = False
    gen: int = 0  # bumped on every re-timing; stale heap entries are skipped


class RejectScheduler:
    def __init__(self, belt_speed_mm_s: float, camera_to_ejector_mm: float, pulse_s: float,
                 decision_margin_s: float = 0.005):
        self.speed = belt_speed_mm_s  # configured; in encoder mode replaced by the measured speed
        self.distance = camera_to_ejector_mm
        self.pulse_s = pulse_s
        self.margin = decision_margin_s
        self._parts: dict[int, _Armed] = {}
        self._heap: list[tuple[float, int, int]] = []
        self._lock = threading.Lock()
        self.changed = threading.Event()  # set when the earliest due time may have moved
        self.late_decisions = 0
        self.missed_fires = 0
        self._enc: tuple[float, float] | None = None  # last (t, encoder_mm)

    # ---- geometry ----
    def fire_time(self, t_capture: float, offset_mm: float = 0.0) -> float:
        return t_capture + (self.distance - offset_mm) / self.speed - self.pulse_s / 2

    def _command(self, part_id: int, fire_at: float, reason: str) -> RejectCommand:
        return RejectCommand(part_id, fire_at, self.pulse_s, deadline=fire_at + self.pulse_s / 2, reason=reason)

    # ---- arming and verdicts ----
    def arm(self, part_id: int, t_capture: float, offset_mm: float = 0.0, reason: str = "unjudged",
            encoder_mm: float | None = None) -> RejectCommand:
        """Called at capture: the part will be rejected unless an OK verdict cancels it in time."""
        target = None
        if encoder_mm is not None and self._enc is not None:
            target = encoder_mm + self.distance - offset_mm
            fire_at = self._time_at(target) - self.pulse_s / 2
        else:
            fire_at = self.fire_time(t_capture, offset_mm)
        cmd = self._command(part_id, fire_at, reason)
        with self._lock:
            if part_id in self._parts:  # the same part seen again (free-run): keep the first arming
                return self._parts[part_id].command
            self._parts[part_id] = _Armed(cmd, decide_by=fire_at - self.margin, target_mm=target)
            heapq.heappush(self._heap, (fire_at, part_id, 0))
        self.changed.set()
        return cmd

    def retime(self, part_id: int, t_capture: float, offset_mm: float, encoder_mm: float | None = None) -> bool:
        """A better position estimate for an armed part (tracking saw it fully in view). Moves its
        fire time; refused once the part is resolved or its decision deadline has passed."""
        with self._lock:
            armed = self._parts.get(part_id)
            if armed is None or armed.resolved:
                return False
            if encoder_mm is not None and armed.target_mm is not None:
                armed.target_mm = encoder_mm + self.distance - offset_mm
                fire_at = self._time_at(armed.target_mm) - self.pulse_s / 2
            else:
                fire_at = self.fire_time(t_capture, offset_mm)
            self._move(part_id, armed, fire_at)
        self.changed.set()
        return True

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
            elif reject and armed.command.reason == "unjudged":
                armed.command = replace(armed.command, reason="verdict")
        self.changed.set()
        return True

    # ---- encoder ----
    def observe_encoder(self, t: float, encoder_mm: float) -> None:
        """Feed a belt position reading; re-times every pending encoder-armed part with the
        measured speed (exponentially smoothed so one jittery reading does not jerk the pulses)."""
        with self._lock:
            if self._enc is not None:
                dt, dmm = t - self._enc[0], encoder_mm - self._enc[1]
                if dt > 1e-4 and dmm > 0:
                    self.speed = 0.7 * self.speed + 0.3 * (dmm / dt)
            self._enc = (t, encoder_mm)
            for part_id, armed in list(self._parts.items()):
                if armed.target_mm is not None and not armed.cancelled:
                    self._move(part_id, armed, self._time_at(armed.target_mm) - self.pulse_s / 2)
        self.changed.set()

    def _time_at(self, position_mm: float) -> float:
        t0, x0 = self._enc  # type: ignore[misc]
        return t0 + (position_mm - x0) / self.speed

    def _move(self, part_id: int, armed: _Armed, fire_at: float) -> None:
        armed.gen += 1
        if not armed.resolved:
            armed.decide_by = fire_at - self.margin
        armed.command = replace(armed.command, fire_at=fire_at, deadline=fire_at + self.pulse_s / 2)
        heapq.heappush(self._heap, (fire_at, part_id, armed.gen))

    # ---- timing thread side ----
    def next_due(self) -> float | None:
        with self._lock:
            self._drop_stale_head()
            return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[RejectCommand]:
        """Commands whose fire time has come, in order; cancelled parts are skipped. No window
        check: the station's timing thread uses `pop_window`."""
        fire, _ = self.pop_window(now, window=False)
        return fire

    def pop_window(self, now: float, window: bool = True) -> tuple[list[RejectCommand], list[RejectCommand]]:
        """(to fire, missed): due commands split by whether `now` is still inside their window."""
        fire: list[RejectCommand] = []
        missed: list[RejectCommand] = []
        with self._lock:
            self._drop_stale_head()
            while self._heap and self._heap[0][0] <= now:
                _, part_id, gen = heapq.heappop(self._heap)
                armed = self._parts.get(part_id)
                if armed is None or armed.gen != gen:
                    continue
                del self._parts[part_id]
                if armed.cancelled:
                    continue
                if window and now > armed.command.deadline:
                    self.missed_fires += 1
                    missed.append(armed.command)
                else:
                    fire.append(armed.command)
                self._drop_stale_head()
        return fire, missed

    def pending(self) -> int:
        """Armed parts whose reject is still due (not cancelled by an OK verdict, not fired yet)."""
        with self._lock:
            return sum(1 for a in self._parts.values() if not a.cancelled)

    def _drop_stale_head(self) -> None:
        while self._heap:
            _, part_id, gen = self._heap[0]
            armed = self._parts.get(part_id)
            if armed is not None and armed.gen == gen and not armed.cancelled:
                return
            heapq.heappop(self._heap)
            if armed is not None and armed.cancelled and armed.gen == gen:
                del self._parts[part_id]
