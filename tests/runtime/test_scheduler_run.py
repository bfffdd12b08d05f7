"""Reject timing in the running station and the scheduler's encoder mode and fire window."""

from __future__ import annotations

import pytest

from station_helpers import station_cfg
from defectgate.scheduler import RejectScheduler
from defectgate.station import build_station

ALL_OK = "decision.ignore_classes=[scratch, dent, crack, stain]"  # random weights saturate at 1.0
ALL_NG = "decision.thresholds={scratch: 0.0}"


def test_encoder_mode_follows_a_belt_that_slows_down():
    s = RejectScheduler(belt_speed_mm_s=500, camera_to_ejector_mm=250, pulse_s=0.02)
    s.observe_encoder(0.0, 0.0)
    s.observe_encoder(0.1, 50.0)  # 500 mm/s measured
    cmd = s.arm(1, 0.1, encoder_mm=50.0)
    assert cmd.fire_at == pytest.approx(0.1 + 0.5 - 0.01)
    # the belt slows to half speed: the part reaches the ejector later, the pulse moves with it
    for k in range(1, 40):
        s.observe_encoder(0.1 + 0.1 * k, 50.0 + 25.0 * k)
    t_due = s.next_due()
    assert t_due == pytest.approx(0.1 + 250 / 250 - 0.01, abs=0.01)
    assert s.pop_due(t_due - 0.005) == [] and [c.part_id for c in s.pop_due(t_due)] == [1]


@pytest.mark.parametrize("first_mm, better_mm", [(0, -40), (-40, -10)], ids=["moved_later", "moved_earlier"])
def test_retime_moves_an_armed_part_and_old_entries_are_ignored(first_mm, better_mm):
    """First sight guesses the part's centre from a cut view (offset `first_mm` past the camera axis);
    50 ms later the part is seen whole at `better_mm`. Its one pulse moves to the new time, whichever
    way: the stale heap entry at the old time neither fires early nor fires a second pulse."""
    s = RejectScheduler(500, 250, 0.02)
    first = s.arm(3, 0.0, offset_mm=first_mm)
    assert first.fire_at == pytest.approx((250 - first_mm) / 500 - 0.01)
    assert s.retime(3, 0.05, offset_mm=better_mm)
    new_due = s.next_due()
    assert new_due == pytest.approx(0.05 + (250 - better_mm) / 500 - 0.01)
    early, late = sorted((first.fire_at, new_due))
    assert late - early > 0.005  # the two times are far enough apart to tell them apart below
    if first.fire_at < new_due:
        assert s.pop_due(first.fire_at + 0.001) == [], "the old, earlier time no longer fires"
    assert s.pop_due(new_due - 0.001) == []
    assert [c.part_id for c in s.pop_due(new_due)] == [3]
    assert s.pop_due(late + 0.001) == [] and s.pop_due(10.0) == [], "the stale heap entry never fires a second pulse"


def test_a_pulse_past_its_window_is_not_fired_but_counted():
    s = RejectScheduler(500, 250, 0.02)
    cmd = s.arm(9, 0.0)
    fire, missed = s.pop_window(cmd.deadline + 0.001)
    assert fire == [] and [c.part_id for c in missed] == [9] and s.missed_fires == 1


def test_ok_parts_are_not_rejected_and_ng_parts_are_rejected_once(tiny_bundle, tmp_path):
    uri = "synthetic://conveyor?parts=8&seed=3&width=96&height=72&realtime=0"
    built = build_station(station_cfg(tiny_bundle, tmp_path / "ok", uri, ALL_OK, "pipeline.overflow=block"))
    stats = built.station.run()
    built.close()
    assert len(stats.verdicts) == 8 and not any(v.is_ng for v in stats.verdicts)
    assert stats.fired == {} and stats.late_decisions == 0

    built = build_station(station_cfg(tiny_bundle, tmp_path / "ng", uri, ALL_NG, "pipeline.overflow=block"))
    stats = built.station.run()
    built.close()
    assert sorted(stats.fired) == list(range(8)) and len(stats.fire_errors_ms) == 8


def test_frames_dropped_when_inference_lags_are_rejected_fail_safe(tiny_bundle, tmp_path):
    """A source much faster than inference with a 1-frame queue: frames are dropped (oldest
    first, the queue never grows), and every dropped part is rejected although the model would
    have passed it."""
    uri = "synthetic://conveyor?parts=30&seed=3&width=96&height=72&realtime=0"
    cfg = station_cfg(tiny_bundle, tmp_path, uri, ALL_OK, "pipeline.queue_size=1",
                      "conveyor.camera_to_ejector_mm=2000")
    built = build_station(cfg)
    slow_infer = built.station.inspector.infer

    def lagging(batch):
        import time

        time.sleep(0.01)  # a slow engine (the source renders a part in ~1 ms)
        return slow_infer(batch)

    built.station.inspector.infer = lagging
    stats = built.station.run()
    built.close()
    judged = {v.part_id for v in stats.verdicts}
    dropped = set(stats.captured) - judged
    assert stats.frames_dropped == len(dropped) > 0
    assert dropped <= set(stats.fired), "every part that was never judged is rejected"
    assert not (judged & set(stats.fired)), "judged OK parts are not rejected"
