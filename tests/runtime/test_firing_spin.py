"""The timing thread sleeps until just before each pulse and spins only the last stretch: a spin
is a core taken from the engine (docs/performance.md, "The timing thread's spin"), so it must be no
longer than the GIL hand-back and the sleep's overshoot need."""

from __future__ import annotations

import threading

from defectgate.actuators.simulated import SimulatedActuator
from defectgate.clock import MonotonicClock
from defectgate.firing import GIL_SWITCH_S, WAKE_BEFORE_PULSE_S, TimingLoop
from defectgate.runstats import RunStats
from defectgate.scheduler import RejectScheduler


class SpinRecordingClock(MonotonicClock):
    """The real clock; records how far ahead of its target each `sleep_until` was called (the spin)."""

    def __init__(self):
        super().__init__()
        self.spins: list[float] = []

    def sleep_until(self, t: float) -> None:
        self.spins.append(t - self.now())
        super().sleep_until(t)


def test_the_timing_thread_spins_at_most_the_wake_margin_before_each_pulse():
    clock = SpinRecordingClock()
    scheduler = RejectScheduler(belt_speed_mm_s=1000, camera_to_ejector_mm=30, pulse_s=0.002)
    stats = RunStats()
    loop = TimingLoop(scheduler, SimulatedActuator(clock), clock, stats, threading.Lock())
    done = threading.Event()
    t0 = clock.now()
    for part in range(8):  # pulses 30 ms after capture, 7 ms apart
        scheduler.arm(part, t0 + 0.007 * part)
    done.set()  # nothing more will be armed: the loop returns once the pulses are out
    thread = threading.Thread(target=loop.run, args=(done,))
    thread.start()
    thread.join(10)
    assert not thread.is_alive()
    assert sorted(stats.fired) == list(range(8)) and stats.missed_fires == 0
    assert len(clock.spins) == 8, "one spin per pulse, none while nothing is due"
    assert max(clock.spins) <= WAKE_BEFORE_PULSE_S
    # woken, the thread may wait one switch interval for the GIL; any more is spun off the engine
    assert GIL_SWITCH_S < WAKE_BEFORE_PULSE_S <= GIL_SWITCH_S + 0.0002
