"""The station's timing thread: fire the ejector at each due time, and keep the books of every pulse.

Every part is armed for rejection at capture (scheduler.py); this loop pops the pulses whose time has
come and fires them, and reports a pulse popped after its window closed as missed (it would hit the
next part). The bookkeeping of a pulse (`record_fire`, `record_missed`: run stats, alarm, telemetry,
archive, the line link) is the same whether the pulse was fired here or by the timing process of
`line.timing.process` (line/), which then runs in this thread's place (`target`).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, Callable

from .errors import ActuatorError

log = logging.getLogger(__name__)

TIMING_RT_PRIORITY = 10
# The station runs with this GIL switch interval (pipeline.py): a thread that wants the GIL gets it
# within one interval from a thread running Python.
GIL_SWITCH_S = 0.0005
# The timing thread sleeps until this long before a pulse, then spins to it. Woken, it may wait one
# switch interval for the GIL, and the sleep itself overshoots by ~0.1 ms (high-resolution timers);
# the rest of the spin is a core taken from the engine. At 2 ms, firing every part of a 130 parts/s
# line spun a quarter of a core and cost 15-25 % of the station's parts/s on 2 cores, with no gain
# in fire accuracy (docs/performance.md, "The timing thread's spin").
WAKE_BEFORE_PULSE_S = GIL_SWITCH_S + 0.0001


def _raise_thread_priority() -> None:
    """Put the calling (timing) thread in the real-time FIFO class so that inference threads do not
    delay a pulse. Needs CAP_SYS_NICE (the systemd unit grants it); without it, log and go on."""
    try:
        os.sched_setscheduler(threading.get_native_id(), os.SCHED_FIFO, os.sched_param(TIMING_RT_PRIORITY))
    except (AttributeError, OSError) as exc:
        log.info("timing thread stays at normal priority (%s); grant CAP_SYS_NICE for tighter pulses", exc)


class TimingLoop:
    def __init__(self, scheduler: Any, actuator: Any, clock: Any, stats: Any, lock: threading.Lock,
                 alarm: Any = None, telemetry: Any = None, archive: Any = None, line: Any = None):
        self.scheduler, self.actuator, self.clock, self.stats, self._lock = scheduler, actuator, clock, stats, lock
        self.alarm, self.telemetry, self.archive, self.line = alarm, telemetry, archive, line

    def target(self, decide_done: threading.Event) -> Callable[[], None]:
        """What the timing thread runs: this loop, or the line's (timing process, or a PLC that owns the
        ejector); tells the line the run starts."""
        line = self.line
        loop = line and line.starting(self.scheduler, decide_done, self.record_fire, self.record_missed)
        return loop or (lambda: self.run(decide_done))

    def run(self, decide_done: threading.Event) -> None:
        """Fire each pulse at its due time until the decide thread is done and nothing is armed."""
        _raise_thread_priority()
        spin = WAKE_BEFORE_PULSE_S
        while True:
            due = self.scheduler.next_due()
            now = self.clock.now()
            if due is None:
                if decide_done.is_set():
                    return
                self.scheduler.changed.wait(0.05)
                self.scheduler.changed.clear()
                continue
            if due - now > spin:
                self.scheduler.changed.wait(min(due - now - spin, 0.05))
                self.scheduler.changed.clear()
                continue
            self.clock.sleep_until(due)
            fire, missed = self.scheduler.pop_window(self.clock.now())
            for cmd in fire:
                self.fire(cmd)
            for cmd in missed:  # too late: the pulse would hit the next part; count and alarm
                self.record_missed(cmd, "fire window missed")

    def fire(self, cmd) -> None:
        t = self.clock.now()
        try:
            self.actuator.fire(cmd.pulse_s)
        except ActuatorError as exc:
            self.record_fire(cmd, None, str(exc))
        else:
            self.record_fire(cmd, t, None)

    def record_missed(self, cmd, reason: str) -> None:
        self.stats.missed_fires += 1
        log.error("%s for part %s", reason, cmd.part_id)
        if self.alarm is not None:
            self.alarm.raise_("fire_window_missed", f"part {cmd.part_id}: {reason}")
        if self.archive is not None:
            self.archive.record_fire(cmd.part_id, cmd.fire_at, None, reason)

    def record_fire(self, cmd, fired: float | None, error: str | None) -> None:
        """The bookkeeping of one pulse, fired here or by the timing process (line.timing.process)."""
        if fired is None:
            self.stats.actuator_failures += 1
            log.error("ejector failed for part %s: %s", cmd.part_id, error)
            if self.alarm is not None:
                self.alarm.raise_("ejector_failed", str(error))
        if fired is not None and self.alarm is not None:
            self.alarm.clear("ejector_failed")
            self.alarm.clear("fire_window_missed")
        with self._lock:
            if fired is not None:
                self.stats.fired[cmd.part_id] = fired
                self.stats.fire_errors_ms.append((fired - cmd.fire_at) * 1000.0)
        if self.telemetry is not None:
            self.telemetry.fired(cmd, fired, error)
        if self.archive is not None:
            self.archive.record_fire(cmd.part_id, cmd.fire_at, fired, error)
        if fired is not None and self.line is not None:
            self.line.fired(cmd.part_id, fired)
