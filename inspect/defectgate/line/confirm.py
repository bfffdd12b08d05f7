"""Line inputs logic, pure and clock-injected: reject confirmation per fired reject, the
line-stop after N unconfirmed rejects in a row, and the state inputs (bin full, air low, line
running). A poller feeds it input snapshots; `observe()` returns the events.

Confirmation: every fired reject expects one rising edge of the confirm sensor between
`window_min_s` and `window_max_s` after the pulse; an edge confirms the oldest reject whose
window holds it. A reject whose window closes without an edge is *unconfirmed*: counted per part,
an event (the station raises the alarm and records it in the part's archive row), and after
`stop_after` in a row the line-stop output is latched on until `reset_line_stop()` (a person
has looked at the ejector). An edge outside every window is counted as spurious, confirming
nothing (a part that fell off the belt must not confirm the next reject)."""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass

from .events import EventKind, LineEvent

STATE_INPUTS = ("bin_full", "air_low", "line_running")
ALARM_INPUTS = {"bin_full": True, "air_low": True}  # input -> the level that is an alarm


@dataclass
class _Expected:
    part_id: int
    t_fired: float


class ConfirmMonitor:
    def __init__(self, window_min_s: float, window_max_s: float, stop_after: int = 3):
        if window_max_s <= window_min_s:
            raise ValueError(f"confirm window {window_min_s}..{window_max_s} s is empty")
        self.window_min_s, self.window_max_s, self.stop_after = window_min_s, window_max_s, stop_after
        self._pending: collections.deque[_Expected] = collections.deque()
        self._lock = threading.Lock()
        self._last_level: bool | None = None
        self._state: dict[str, bool] = {}
        self.confirmed = 0
        self.unconfirmed = 0
        self.spurious = 0
        self.in_row = 0
        self.line_stop = False
        self.unconfirmed_parts: collections.deque[int] = collections.deque(maxlen=1000)

    def expect(self, part_id: int, t_fired: float) -> None:
        with self._lock:
            self._pending.append(_Expected(part_id, t_fired))

    def observe(self, inputs: dict[str, bool], now: float) -> list[LineEvent]:
        events: list[LineEvent] = []
        with self._lock:
            level = inputs.get("reject_confirm")
            if level is not None:
                if level and self._last_level is False:
                    self._edge(now, events)
                self._last_level = bool(level)
            self._expire(now, events)
            for name in STATE_INPUTS:
                if name in inputs and self._state.get(name) != bool(inputs[name]):
                    first = name not in self._state
                    self._state[name] = bool(inputs[name])
                    if not first or (name in ALARM_INPUTS and inputs[name] == ALARM_INPUTS[name]):
                        events.append(LineEvent(EventKind.input_changed, now, detail=f"{name}={int(inputs[name])}"))
        return events

    def abandon(self, now: float) -> list[LineEvent]:
        """The run is over and no more inputs are read: a reject still waiting for its sensor can no longer
        be confirmed, so it is unconfirmed (never assume the part reached the bin), counted against its
        part. The line-stop is not latched for these: the line is stopping anyway."""
        events: list[LineEvent] = []
        with self._lock:
            while self._pending:
                self._unconfirmed(self._pending.popleft(), now, "the run ended before its confirm window closed",
                                  events)
        return events

    def reset_line_stop(self) -> None:
        with self._lock:
            self.line_stop, self.in_row = False, 0

    @property
    def state(self) -> dict[str, bool]:
        with self._lock:
            return dict(self._state)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def _edge(self, now: float, events: list[LineEvent]) -> None:
        for exp in self._pending:
            if exp.t_fired + self.window_min_s <= now <= exp.t_fired + self.window_max_s:
                self._pending.remove(exp)
                self.confirmed += 1
                self.in_row = 0
                events.append(LineEvent(EventKind.reject_confirmed, now, exp.part_id))
                return
        self.spurious += 1

    def _expire(self, now: float, events: list[LineEvent]) -> None:
        while self._pending and now > self._pending[0].t_fired + self.window_max_s:
            exp = self._pending.popleft()
            self._unconfirmed(exp, now, f"no confirm within {self.window_max_s * 1000:.0f} ms of the pulse", events)
            self.in_row += 1
            if self.in_row >= self.stop_after and not self.line_stop:
                self.line_stop = True
                events.append(LineEvent(EventKind.line_stop, now, exp.part_id,
                                        detail=f"{self.in_row} unconfirmed rejects in a row"))

    def _unconfirmed(self, exp: _Expected, now: float, why: str, events: list[LineEvent]) -> None:
        self.unconfirmed += 1
        self.unconfirmed_parts.append(exp.part_id)
        events.append(LineEvent(EventKind.reject_unconfirmed, now, exp.part_id, detail=why))
