"""The line link's per-run counts and the plc_tracks reconciliation (pure: events in, numbers out),
the PLC-triggered source on a real handshake, and the link's start interlock and bounded memory."""

from __future__ import annotations

import pytest

from defectgate.clock import FakeClock, MonotonicClock
from defectgate.line import block as B
from defectgate.line.config import load_line_config
from defectgate.line.events import EventKind, LineEvent
from defectgate.line.facade import ACQ_MEMORY, LineLink
from defectgate.line.handshake import Handshake
from defectgate.line.stats import LineStats, format_line
from defectgate.line.trigger_source import PlcTriggeredSource
from defectgate.sources.synthetic import SyntheticConveyor


def test_undelivered_ok_parts_and_lost_triggers_are_parts_the_plc_must_have_ejected():
    s = LineStats(mode="plc_tracks", trigger="plc")
    ev = [LineEvent(EventKind.delivered, 0, 1), LineEvent(EventKind.undelivered, 0, 2, detail="ack_timeout"),
          LineEvent(EventKind.undelivered, 0, 3, detail="fifo_full"), LineEvent(EventKind.reject_unconfirmed, 0, 4)]
    s.take(ev, was_ok={2: True, 3: False})
    s.triggers_lost, s.plc = 1, {"ejected": 9, "ejected_failsafe": 3}
    assert s.results_delivered == 1 and s.undelivered == {"ack_timeout": 1, "fifo_full": 1} and s.undelivered_ok == 1
    rec = s.reconcile(verdict_ng=5, unjudged=2)
    assert rec["expected"] == 5 + 1 + 2 + 1 and rec["reconciled"], "NG + undelivered OK + unjudged + lost IDs"
    assert not s.reconcile(verdict_ng=6, unjudged=2)["reconciled"]
    r = s.report(verdict_ng=5, unjudged=2)
    assert r["not_judged_by_plc"] == 2 + 2 and r["unconfirmed_parts"] == [4]
    rows = dict(format_line(r))
    assert rows["PLC ejected vs station"].endswith("+ 1 triggers lost = 9: reconciled")
    s.trigger = "camera"  # a lost ID in camera mode is a frame under another ID, not a part never taken
    assert s.reconcile(verdict_ng=5, unjudged=2)["expected"] == 8


def test_a_plc_triggered_source_gives_each_frame_the_triggers_id_and_keeps_a_trigger_the_camera_missed():
    clock = MonotonicClock()
    hs = Handshake(FakeClock())
    hs.take_plc(B.PlcBlock(trigger_count=0), 0.0)
    camera = SyntheticConveyor("synthetic://conveyor?parts=3&width=64&height=48", clock, 600.0, 1200.0, 160.0)
    src = PlcTriggeredSource(camera, hs)  # one part every 2 s on this belt: the camera has no frame at once
    assert src.read(0.01) is None, "no trigger: no frame"
    hs.take_plc(B.PlcBlock(trigger_count=1, trigger_acq_id=9001), 0.0)
    first = src.read(0.05)
    assert first is not None and first.part_id == 9001 and first.encoder_mm is None
    hs.take_plc(B.PlcBlock(trigger_count=2, trigger_acq_id=9002), 0.0)
    assert src.read(0.05) is None, "the camera's next frame is not there yet"
    frame = src.read(3.0)
    assert frame is not None and frame.part_id == 9002 and frame.seq == 1, "the trigger waited for its frame"
    assert src.triggers == 2 and src.hw == (48, 64) and not src.exhausted


def test_the_link_says_ready_only_once_the_station_runs_and_forgets_parts_that_never_got_a_verdict():
    pytest.importorskip("pymodbus", reason="needs the [station] extra")
    from line_helpers import free_port, wait_for

    from defectgate.line.plc_sim import PlcSimulator

    sim = PlcSimulator(port=free_port(), pitch_mm=None).start()
    cfg = load_line_config({"mode": "plc_tracks", "result_block": {"transport": "modbus", "modbus": {"port": sim.port},
                                                                   "cycle_ms": 5}})
    link = LineLink.from_config(cfg, MonotonicClock()).start()
    try:
        assert wait_for(lambda: link.snapshot().link_up, 3.0)
        assert wait_for(lambda: sim.program.plc.plc_heartbeat > 20, 2.0)
        assert not sim.program.vision_ready and link.snapshot().state == "Initialized", \
            "link up, but the station's threads do not run yet: not Ready (a triggered part would be lost)"
        link.run_started()
        assert wait_for(lambda: sim.program.vision_ready, 2.0) and link.snapshot().state == "Ready"
        for part in range(ACQ_MEMORY + 5):  # frames dropped: no verdict ever comes for them
            link.part_captured(part, acquisition_id=part)
        assert len(link._acq) == ACQ_MEMORY and 0 not in link._acq and ACQ_MEMORY + 4 in link._acq
    finally:
        link.close()
        sim.close()


def test_flush_hands_over_the_last_outcomes_before_the_service_thread_would():
    pytest.importorskip("pymodbus", reason="needs the [station] extra")
    from defectgate.line.modbus_link import ModbusClientTransport
    from defectgate.types import Outcome, Verdict

    clock = FakeClock()
    cfg = load_line_config({"mode": "plc_tracks", "result_block": {"transport": "modbus", "ack_timeout_ms": 100}})
    link = LineLink(cfg, clock, transport=ModbusClientTransport("127.0.0.1", 9))  # never started: no service thread
    link.verdict_ready(Verdict(5, Outcome.NG))
    clock.advance(0.2)
    link.handshake.station_block(clock.now())  # the ack timeout falls due in the handshake
    assert link.handshake.pending == 0 and link.events() == []
    assert link.flush(0.0)
    assert [(e.kind, e.part_id, e.detail) for e in link.events()] == [(EventKind.undelivered, 5, "ack_timeout")]
