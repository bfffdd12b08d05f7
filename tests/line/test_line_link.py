"""LineLink against the simulated PLC and plain servers, real Modbus TCP on 127.0.0.1: the whole
plc_tracks loop, and each fault of the issue (PLC unreachable at start and mid-run, acks that
never come, a FIFO that fills, a confirm sensor that never fires)."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("pymodbus", reason="needs the [station] extra")

from line_helpers import free_port, wait_for  # noqa: E402

from defectgate.actuators.alarm import Alarm, SimulatedOutput  # noqa: E402
from defectgate.clock import MonotonicClock  # noqa: E402
from defectgate.line import block as B  # noqa: E402
from defectgate.line.config import load_line_config  # noqa: E402
from defectgate.line.events import EventKind  # noqa: E402
from defectgate.line.facade import LineLink  # noqa: E402
from defectgate.line.modbus_server import RegisterServer  # noqa: E402
from defectgate.line.plc_sim import PlcSimulator  # noqa: E402
from defectgate.types import Outcome, Verdict  # noqa: E402


def _link(port: int, alarm=None, **block) -> LineLink:
    rb = {"transport": "modbus", "modbus": {"port": port}, "cycle_ms": 5, "ack_timeout_ms": 300,
          "reconnect_ms": 50, **block}
    cfg = load_line_config({"mode": "plc_tracks", "result_block": rb})
    return LineLink.from_config(cfg, MonotonicClock(), alarm).start()


def _of(events, kind):
    return [e for e in events if e.kind is kind]


def test_plc_tracks_end_to_end_the_plc_ejects_exactly_the_ng_parts_and_the_unjudged_one():
    sim = PlcSimulator(port=free_port(), belt_speed_mm_s=1000, camera_to_ejector_mm=300, pitch_mm=None,
                       scan_s=0.002).start()
    link = _link(sim.port)
    try:
        verdicts = {1: Outcome.NG, 2: Outcome.OK, 3: Outcome.NG, 4: Outcome.OK}
        acq = {}
        assert wait_for(lambda: link.snapshot().link_up, 2.0)  # triggers before the first read are history
        for part in range(1, 6):
            trig = sim.trigger()
            assert wait_for(lambda: link.handshake.counts["triggers"] >= part, 2.0)
            acq[part] = link.part_captured(part)  # the ID comes from the PLC's trigger
            assert acq[part] == trig
            if part in verdicts:  # part 5 never gets a verdict (the station lost it)
                link.verdict_ready(Verdict(part, verdicts[part], model_version="v0002"))
            time.sleep(0.05)  # parts 50 mm apart: one confirm-sensor edge each
        assert wait_for(lambda: len(sim.program.decisions) == 5, 3.0)
        decided = {d.acquisition_id: (d.rejected, d.failsafe) for d in sim.program.decisions}
        assert decided == {acq[1]: (True, False), acq[2]: (False, False), acq[3]: (True, False),
                           acq[4]: (False, False), acq[5]: (True, True)}
        assert wait_for(lambda: link.snapshot().plc.get("ejected") == 3, 1.0)
        snap = link.snapshot()
        assert snap.plc["ejected_failsafe"] == 1 and snap.link_up and snap.plc_alive and snap.state == "Executing"
        assert sorted(e.part_id for e in _of(link.events(), EventKind.delivered)) == [1, 2, 3, 4]
        assert wait_for(lambda: sim.program.plc.confirmed == 3, 1.0), "the sim's confirm sensor saw all three"
    finally:
        link.close()
        sim.close()


def test_plc_unreachable_at_start_every_result_is_undelivered_and_alarmed_then_recovers():
    port = free_port()
    alarm = Alarm(SimulatedOutput())
    link = _link(port, alarm)
    try:
        for part in range(3):
            link.part_captured(part, acquisition_id=100 + part)
            link.verdict_ready(Verdict(part, Outcome.NG))
        assert wait_for(lambda: len(_of(link.events(), EventKind.undelivered)) == 0 and
                        link.snapshot().counts.get("undelivered:ack_timeout") == 3, 2.0)
        assert alarm.active.keys() >= {"plc_link_lost", "result_ack_timeout"}
        assert link.snapshot().state == "Error"
        sim = PlcSimulator(port=port, pitch_mm=None).start()  # the PLC comes up
        try:
            assert wait_for(lambda: link.snapshot().link_up, 3.0)
            assert wait_for(lambda: "plc_link_lost" not in alarm.active, 1.0)
            link.verdict_ready(Verdict(9, Outcome.OK))
            assert wait_for(lambda: link.snapshot().counts.get("delivered") == 1, 2.0)
        finally:
            link.close()
            sim.close()
    finally:
        link.close()


def test_a_plc_that_hangs_never_blocks_the_stations_calls():
    import socket

    with socket.socket() as blackhole:  # accepts the TCP connection, never answers a request
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen()
        link = _link(blackhole.getsockname()[1], modbus={"port": blackhole.getsockname()[1], "timeout_ms": 2000})
        try:
            time.sleep(0.1)  # the link thread is now inside a 2 s read
            t0 = time.monotonic()
            for part in range(20):
                link.part_captured(part)
                link.verdict_ready(Verdict(part, Outcome.NG))
                link.snapshot()
            assert time.monotonic() - t0 < 1.0, "20 parts must not wait for the hung PLC's 2 s timeout"
        finally:
            link.close()


def test_plc_lost_mid_run_then_the_sim_rejects_parts_the_station_never_delivered():
    sim = PlcSimulator(port=free_port(), belt_speed_mm_s=1000, camera_to_ejector_mm=200, pitch_mm=None).start()
    link = _link(sim.port)
    for part in range(2):
        link.part_captured(part, sim.trigger())
        link.verdict_ready(Verdict(part, Outcome.OK))
    assert wait_for(lambda: link.snapshot().counts.get("delivered") == 2, 2.0)
    link.close()  # the station's link dies mid-run; the PLC keeps running
    late = [sim.trigger() for _ in range(2)]
    try:
        assert wait_for(lambda: len(sim.program.decisions) == 4, 3.0)
        decided = {d.acquisition_id: (d.rejected, d.failsafe) for d in sim.program.decisions}
        assert [decided[a] for a in late] == [(True, True)] * 2, "no result: rejected by the PLC, fail-safe"
        assert sum(not r for r, _ in decided.values()) == 2, "the two OK parts passed"
    finally:
        sim.close()


def test_plc_dies_mid_run_the_station_reports_the_waiting_results_undelivered():
    sim = PlcSimulator(port=free_port(), pitch_mm=None).start()
    alarm = Alarm(SimulatedOutput())
    link = _link(sim.port, alarm)
    try:
        assert wait_for(lambda: link.snapshot().link_up, 2.0)
        sim.close()
        for part in range(4):
            link.verdict_ready(Verdict(part, Outcome.NG))
        assert wait_for(lambda: link.snapshot().counts.get("undelivered:ack_timeout") == 4, 2.0)
        assert not link.snapshot().link_up and "plc_link_lost" in alarm.active
    finally:
        link.close()


def test_acks_that_never_come_time_out_visibly_in_the_plcs_registers():
    dumb = RegisterServer("127.0.0.1", free_port(), what="a PLC without the program")
    alarm = Alarm(SimulatedOutput())
    link = _link(dumb.port, alarm, ack_timeout_ms=100)
    try:
        link.verdict_ready(Verdict(7, Outcome.NG))
        assert wait_for(lambda: B.decode_station(dumb.read(0, 16)).status & B.StationBits.RESULT_VALID, 1.0)
        assert wait_for(lambda: B.decode_station(dumb.read(0, 16)).ack_timeouts == 1, 1.0)
        st = B.decode_station(dumb.read(0, 16))
        assert st.status & B.StationBits.ACK_TIMEOUT and not st.status & B.StationBits.RESULT_VALID
        # the cycle writes the registers first and takes the handshake's events just after: wait for them
        seen: list = []
        assert wait_for(lambda: bool(seen.extend(_of(link.events(), EventKind.undelivered)) or seen), 1.0)
        [ev] = seen
        assert (ev.part_id, ev.detail) == (7, "ack_timeout")
        assert wait_for(lambda: "result_ack_timeout" in alarm.active, 1.0)  # raised right after the events
    finally:
        link.close()
        dumb.close()


def test_a_full_fifo_is_an_error_bit_the_plc_reads_and_nothing_is_dropped_silently():
    dumb = RegisterServer("127.0.0.1", free_port(), what="a PLC that does not ack")
    alarm = Alarm(SimulatedOutput())
    link = _link(dumb.port, alarm, ack_timeout_ms=10_000, fifo_size=8)
    try:
        for part in range(10):
            link.verdict_ready(Verdict(part, Outcome.NG))
        assert wait_for(lambda: B.decode_station(dumb.read(0, 16)).status & B.StationBits.FIFO_FULL, 1.0)
        st = B.decode_station(dumb.read(0, 16))
        assert st.fifo_depth == 8 and st.results_lost == 2
        lost: list = []  # taken from the handshake just after the registers are written: wait for them
        assert wait_for(lambda: len(lost.extend(_of(link.events(), EventKind.undelivered)) or lost) >= 2, 1.0)
        assert [e.part_id for e in lost] == [8, 9]
        assert wait_for(lambda: "result_fifo_full" in alarm.active, 1.0)  # raised right after the events
        link.close()
        assert sorted(e.part_id for e in _of(link.events(), EventKind.undelivered)) == list(range(8)), \
            "closing reports the eight still waiting"
    finally:
        link.close()
        dumb.close()


def _fire_and_watch(sim: PlcSimulator, link: LineLink, parts: int, gap_s: float) -> None:
    """station_fires: the station's ejector is the sim's coil 0; each pulse is reported to the link."""
    from defectgate.actuators import open_actuator

    ejector = open_actuator("modbus", {"host": "127.0.0.1", "port": sim.port, "coil": 0}, MonotonicClock())
    try:
        for part in range(parts):
            ejector.fire(0.03)
            link.reject_fired(part, MonotonicClock().now())
            time.sleep(gap_s)
    finally:
        ejector.close()


def _confirm_cfg(sim: PlcSimulator, **extra):
    return load_line_config({"inputs": {"kind": "modbus", "map": {"reject_confirm": 0, "bin_full": 1},
                                        "options": {"host": "127.0.0.1", "port": sim.port}, "poll_ms": 2}, **extra})


def test_station_fires_with_a_confirm_sensor_that_never_fires_stops_the_line():
    sim = PlcSimulator(port=free_port(), pitch_mm=None, confirm_miss_rate=1.0).start()
    cfg = _confirm_cfg(sim, confirm={"enabled": True, "window_min_ms": 10, "window_max_ms": 120, "stop_after": 2},
                       line_stop={"kind": "simulated"})
    alarm = Alarm(SimulatedOutput())
    link = LineLink.from_config(cfg, MonotonicClock(), alarm).start()
    try:
        _fire_and_watch(sim, link, 3, 0.2)
        unconfirmed = [e.part_id for e in link.events() if e.kind is EventKind.reject_unconfirmed]
        assert unconfirmed == [0, 1, 2] and sim.confirm_missed == 3
        snap = link.snapshot()
        assert snap.counts["rejects_unconfirmed"] == 3 and snap.line_stop
        assert link.line_stop_output.state is True, "the line-stop output is set after 2 in a row"
        assert {"reject_unconfirmed", "line_stop"} <= alarm.active.keys()
        sim.set_line(bin_full=True)
        assert wait_for(lambda: "bin_full" in alarm.active, 1.0)
        link.reset_line_stop()
        assert link.line_stop_output.state is False and not link.snapshot().line_stop
    finally:
        link.close()
        sim.close()


def test_station_fires_confirmed_rejects_through_the_sims_sensor():
    sim = PlcSimulator(port=free_port(), pitch_mm=None, confirm_delay_ms=40, confirm_pulse_ms=100).start()
    # the sensor answers 40 ms after the pulse and stays on 100 ms (a poll delayed by a loaded host still
    # sees it); the window is wide (a loaded CI machine may delay the sim's
    # scan or the link's poll by a few hundred ms) and the pulses further apart than it, so each
    # confirmation can only belong to its own reject
    link = LineLink.from_config(_confirm_cfg(sim, confirm={"enabled": True, "window_min_ms": 10,
                                                           "window_max_ms": 600}), MonotonicClock()).start()
    try:
        _fire_and_watch(sim, link, 2, 0.7)
        assert [e.part_id for e in link.events() if e.kind is EventKind.reject_confirmed] == [0, 1]
        assert link.snapshot().counts["rejects_unconfirmed"] == 0
    finally:
        link.close()
        sim.close()


@pytest.mark.parametrize("late_scan", [False, True], ids=["scans_on_time", "scan_late_past_the_whole_pulse"])
def test_the_sims_confirm_pulse_is_written_in_at_least_one_scan_however_late_the_scan_runs(late_scan):
    """A host too busy to scan for longer than the sensor's pulse must not erase a part the sensor saw:
    the pulse reaches the discrete input in one scan at least, and then ends."""
    from defectgate.clock import FakeClock

    clock = FakeClock(100.0)
    sim = PlcSimulator(port=free_port(), pitch_mm=None, confirm_delay_ms=40, confirm_pulse_ms=20, clock=clock)
    sim._t_last = clock.now()  # scanned by hand below (no scan thread)
    try:
        def scan(dt: float) -> bool:
            clock.advance(dt)
            sim.scan_once()
            return bool(sim.server.read(0, 1, fc=2)[0])

        sim.server.write(0, [True], fc=1)  # the station's ejector command rises
        assert scan(0.002) is False, "the sensor sees the part only after confirm_delay_ms"
        sim.server.write(0, [False], fc=1)
        if late_scan:
            levels = [scan(0.200), scan(0.002), scan(0.002)]  # the next scan comes 200 ms later
        else:
            levels = [scan(0.010) for _ in range(10)]
        assert levels.count(True) >= 1 and levels[-1] is False, levels
        assert [a and not b for a, b in zip(levels[1:], levels)].count(True) <= 1, "one part, one rising edge"
    finally:
        sim.close()


def test_a_flush_that_runs_out_of_time_counts_the_open_confirm_windows_unconfirmed():
    """The end of a run cannot wait for ever on a confirm sensor: what is still open when flush() gives up
    is counted unconfirmed against its part, in the same events the report and the archive take."""
    sim = PlcSimulator(port=free_port(), pitch_mm=None, confirm_miss_rate=1.0).start()
    link = LineLink.from_config(_confirm_cfg(sim, confirm={"enabled": True, "window_min_ms": 10,
                                                           "window_max_ms": 5000}), MonotonicClock()).start()
    try:
        link.reject_fired(3, MonotonicClock().now())
        assert link.flush(0.05) is False, "the window is still open: not idle"
        events = [(e.kind, e.part_id) for e in link.events()]
        assert events == [(EventKind.reject_unconfirmed, 3)]
        assert link.snapshot().counts["rejects_unconfirmed"] == 1
    finally:
        link.close()
        sim.close()
