"""Reject timing on a fake clock: no sleeping, exact arithmetic."""

import pytest

from defectgate.clock import FakeClock
from defectgate.scheduler import RejectScheduler


def sched(margin=0.005):
    # 500 mm/s, ejector 250 mm downstream, 20 ms pulse -> due 0.5 s after capture, pulse centred
    return RejectScheduler(belt_speed_mm_s=500, camera_to_ejector_mm=250, pulse_s=0.020, decision_margin_s=margin)


def test_fire_time_from_belt_distance_and_offset():
    s = sched()
    assert s.fire_time(10.0) == pytest.approx(10.0 + 0.5 - 0.010)
    # a part captured 50 mm past the optical axis is 0.1 s closer to the ejector
    assert s.fire_time(10.0, offset_mm=50) == pytest.approx(10.0 + 0.4 - 0.010)


def test_ok_verdict_in_time_cancels_the_reject():
    clock, s = FakeClock(), sched()
    s.arm(1, clock.now())
    clock.advance(0.02)
    assert s.resolve(1, reject=False, now=clock.now()) is True
    clock.advance(1.0)
    assert s.pop_due(clock.now()) == []
    assert s.next_due() is None


def test_ng_verdict_fires_at_due_time_not_before():
    clock, s = FakeClock(), sched()
    cmd = s.arm(7, clock.now())
    s.resolve(7, reject=True, now=0.01)
    assert s.pop_due(cmd.fire_at - 1e-6) == []
    due = s.pop_due(cmd.fire_at)
    assert [c.part_id for c in due] == [7]
    assert due[0].pulse_s == 0.020
    assert s.pop_due(cmd.fire_at + 1) == []  # fired once only


def test_unjudged_part_is_rejected_fail_safe():
    s = sched()
    cmd = s.arm(3, 0.0)  # its frame was dropped or inference hung: no verdict ever comes
    assert [c.part_id for c in s.pop_due(cmd.fire_at)] == [3]


def test_late_ok_verdict_does_not_cancel_and_is_counted():
    s = sched(margin=0.005)
    cmd = s.arm(4, 0.0)
    late = cmd.fire_at - 0.001  # inside the decision margin
    assert s.resolve(4, reject=False, now=late) is False
    assert s.late_decisions == 1
    assert [c.part_id for c in s.pop_due(cmd.fire_at)] == [4]


def test_commands_come_out_in_fire_order_and_rearming_is_ignored():
    s = sched()
    s.arm(1, 0.0)
    s.arm(2, 0.1)
    s.arm(1, 0.05)  # seen again in a later frame: keep the first arming
    s.resolve(1, True, 0.01)
    s.resolve(2, True, 0.11)
    assert [c.part_id for c in s.pop_due(10)] == [1, 2]
    assert s.pending() == 0
