"""The reject-timing process: real child processes, real pipes, a real Modbus coil as ejector."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from line_helpers import free_port, wait_for

from defectgate.clock import MonotonicClock
from defectgate.line.timing_process import ProcessScheduler

pytestmark = pytest.mark.slow  # each test spawns Python processes (~1 s each on a 2-core box)


class Reports:
    def __init__(self):
        self.fired, self.failed, self.missed, self.died = [], [], [], []

    def on_fired(self, cmd, t, error):
        (self.fired if t is not None else self.failed).append((cmd, t, error))

    def on_missed(self, cmd, reason):
        self.missed.append((cmd.part_id, reason))


def _pump(sched, reports, done):
    th = threading.Thread(target=sched.pump, args=(reports.on_fired, reports.on_missed, done.is_set),
                          kwargs={"on_died": reports.died.append}, daemon=True)
    th.start()
    return th


def test_the_child_fires_armed_parts_on_a_real_coil_and_skips_cancelled_ones():
    pytest.importorskip("pymodbus", reason="needs the [station] extra")
    from defectgate.line.modbus_server import RegisterServer

    plc = RegisterServer("127.0.0.1", free_port(), what="ejector PLC")
    clock = MonotonicClock()
    # 1000 mm/s, ejector 300 mm away: fire ~0.3 s after capture
    sched = ProcessScheduler(1000.0, 300.0, 0.05, actuator_kind="modbus",
                             actuator_options={"host": "127.0.0.1", "port": plc.port, "coil": 3}).start()
    reports, done = Reports(), threading.Event()
    try:
        th = _pump(sched, reports, done)
        t0 = clock.now()
        for part in range(3):
            sched.arm(part, t0 + part * 0.05)
        assert sched.resolve(1, reject=False, now=clock.now()), "an OK in time cancels part 1"
        assert sched.resolve(2, reject=True, now=clock.now())
        assert wait_for(lambda: plc.read(3, 1, fc=1) == [1], 2.0), "the child drives the coil"
        done.set()
        th.join(5.0)
        assert not th.is_alive()
        fired = {cmd.part_id: (cmd, t) for cmd, t, _ in reports.fired}
        assert sorted(fired) == [0, 2], "part 0 (never judged) and part 2 (NG) fired; part 1 (OK) did not"
        assert all(t >= cmd.fire_at for cmd, t in fired.values()), "never early"
        assert not reports.missed and not reports.died
    finally:
        sched.close()
        plc.close()


def test_a_killed_timing_process_is_seen_restarted_and_its_unguaranteed_parts_reported():
    clock = MonotonicClock()
    sched = ProcessScheduler(1000.0, 300.0, 0.02, dead_after_s=0.25).start()
    reports, done = Reports(), threading.Event()
    try:
        first_pid = sched.child_pid
        t0 = clock.now()
        # part 1 falls due 0.69 s from now: long after the kill below (a loaded CI machine may stall the
        # test for a while, and a child still alive at the due time would rightly fire it), long before
        # the restart, which waits for the pump
        sched.arm(1, t0 + 0.4)
        sched.arm(2, t0 + 3.0)  # due in 3.3 s: the new child must take it over
        sched.arm(3, t0 - 0.2)
        sched.resolve(3, reject=False, now=clock.now())  # OK in time: nothing to guarantee
        os.kill(first_pid, signal.SIGKILL)
        assert wait_for(lambda: not sched.alive, 5.0)
        clock.sleep_until(t0 + 0.8)  # part 1 falls due while no timing process is alive
        th = _pump(sched, reports, done)
        assert wait_for(lambda: sched.restarts == 1, 30.0)
        assert sched.child_pid != first_pid and sched.alive
        assert reports.died and "exit code" in reports.died[0]
        assert reports.missed == [(1, "timing process died")], "due in the gap: counted, never assumed fired"
        assert sched.unguaranteed == 1 and sched.missed_fires == 1
        done.set()
        th.join(10.0)
        assert [cmd.part_id for cmd, _, _ in reports.fired] == [2], "the new child fires the later part"
    finally:
        sched.close()


def test_a_late_pulse_is_reported_missed_not_fired():
    clock = MonotonicClock()
    sched = ProcessScheduler(1000.0, 300.0, 0.02).start()
    reports, done = Reports(), threading.Event()
    try:
        sched.arm(9, clock.now() - 0.5)  # its window closed 0.2 s ago
        done.set()
        sched.pump(reports.on_fired, reports.on_missed, done.is_set)
        assert reports.missed == [(9, "fire window missed")] and not reports.fired
        assert sched.missed_fires == 1
    finally:
        sched.close()


def test_an_actuator_that_cannot_open_fails_start_with_a_clear_error():
    from defectgate.errors import ActuatorError

    sched = ProcessScheduler(1000.0, 300.0, 0.02, actuator_kind="modbus", actuator_options={"host": "127.0.0.1",
                                                                                            "coil": 70000})
    with pytest.raises(ActuatorError, match="could not start its actuator modbus"):
        sched.start()
