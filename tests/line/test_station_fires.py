"""The station in `station_fires` mode with the line: the ejector timed in its own process
(`line.timing.process`), reject confirmation through the simulated PLC's sensor (real Modbus TCP:
the station's pulse is the sim's coil 0, the sensor its discrete input 0), and a timing process
killed mid-run. Every part has one archive row; every reject ends fired or counted missed."""

from __future__ import annotations

import os
import signal
import threading

import pytest

pytest.importorskip("pymodbus", reason="needs the [station] extra")

from line_helpers import free_port, wait_for  # noqa: E402
from station_line_helpers import archive_rows, events_of, line_station_cfg  # noqa: E402

from defectgate.clock import MonotonicClock  # noqa: E402
from defectgate.line.plc_sim import PlcSimulator  # noqa: E402
from defectgate.report import line_report  # noqa: E402
from defectgate.station import build_station  # noqa: E402

pytestmark = pytest.mark.slow  # a real-time conveyor and a spawned timing process: a few seconds each

CRACK_ONLY = "decision.ignore_classes=[scratch, dent, stain]"


def _fires(run_dir):
    import sqlite3

    conn = sqlite3.connect(run_dir / "archive" / "parts.sqlite")
    try:
        return conn.execute("SELECT part_id, fired, error FROM fires ORDER BY id").fetchall()
    finally:
        conn.close()


@pytest.mark.parametrize("miss_rate", [0.0, 1.0], ids=["sensor_sees_every_reject", "sensor_never_fires"])
def test_rejects_fired_by_the_timing_process_are_confirmed_or_counted_unconfirmed_per_part(
        tiny_bundle, tmp_path, miss_rate):
    # the pulses are ~200 ms apart; the sensor's pulse (60..140 ms after each) is long enough that a poll
    # delayed by a loaded 2-core CI host still sees it (a 20 ms pulse was missed there once)
    sim = PlcSimulator(port=free_port(), pitch_mm=None, confirm_delay_ms=60, confirm_pulse_ms=80,
                       confirm_miss_rate=miss_rate).start()
    parts = 8
    cfg = line_station_cfg(
        tiny_bundle, tmp_path, f"synthetic://conveyor?parts={parts}&seed=3&width=96&height=72", CRACK_ONLY,
        "actuator.kind=modbus", f"actuator.options={{host: 127.0.0.1, port: {sim.port}, coil: 0}}",
        "line.timing.process=true", "line.inputs.kind=modbus", "line.inputs.map={reject_confirm: 0, bin_full: 1}",
        f"line.inputs.options={{host: 127.0.0.1, port: {sim.port}}}", "line.confirm.enabled=true",
        "line.confirm.window_min_ms=10", "line.confirm.window_max_ms=250", "line.confirm.stop_after=2",
        "line.line_stop.kind=simulated")
    try:
        built = build_station(cfg)
        assert built.station.actuator is None, "the timing process owns the ejector"
        stats = built.station.run()
        report = line_report(stats, "", "", built.alarm)
        line_stop = built.station.line.link.line_stop_output.state
        built.close()
    finally:
        sim.close()
    rows, events = archive_rows(tmp_path)
    assert len(rows) == parts == len({r["part_id"] for r in rows})
    ng = {r["part_id"] for r in rows if r["verdict"] == "NG"}
    fired = {p for p, t, err in _fires(tmp_path) if t is not None}
    assert fired == ng and 1 < len(ng) < parts, "the child fired the NG parts on the sim's coil"
    line = report["line"]
    assert line["timing"] == "process" and line["timing_restarts"] == 0
    if miss_rate == 0:
        assert sorted(e["part_id"] for e in events_of(events, "reject_confirmed")) == sorted(ng)
        assert line["rejects_confirmed"] == len(ng) and line["rejects_unconfirmed"] == 0 and not line_stop
    else:
        assert sorted(e["part_id"] for e in events_of(events, "reject_unconfirmed")) == sorted(ng), \
            "each unconfirmed reject is recorded against its part"
        assert line["rejects_unconfirmed"] == len(ng) and sorted(line["unconfirmed_parts"]) == sorted(ng)
        assert line_stop and line["line_stops"] == 1, "2 unconfirmed in a row set the line-stop output"
        assert {"reject_unconfirmed", "line_stop"} <= set(built.alarm.raised)


def test_a_killed_timing_process_is_alarmed_restarted_and_its_unguaranteed_pulses_counted(tiny_bundle, tmp_path):
    parts = 14  # every part NG (the tiny model's defects everywhere): a pulse every 0.2 s
    cfg = line_station_cfg(tiny_bundle, tmp_path, f"synthetic://conveyor?parts={parts}&seed=3&width=96&height=72",
                           "line.timing.process=true", "line.timing.dead_after_ms=200")
    built = build_station(cfg)
    scheduler = built.station.scheduler
    first_pid = scheduler.child_pid

    def kill_just_before_a_pulse():  # after the first pulse, 30 ms before the next: a restart cannot make it
        if wait_for(lambda: len(built.station.stats.fired) >= 1, 10.0) and wait_for(
                lambda: 0 < (scheduler.next_due() or 0) - clock.now() < 0.03, 10.0, step=0.001):
            os.kill(first_pid, signal.SIGKILL)

    clock = MonotonicClock()
    killer = threading.Thread(target=kill_just_before_a_pulse, daemon=True)
    killer.start()
    stats = built.station.run()
    report = line_report(stats, "", "", built.alarm)
    built.close()
    killer.join(1.0)
    assert scheduler.restarts == 1 and scheduler.child_pid != first_pid
    assert "timing_process_died" in built.alarm.raised
    line = report["line"]
    assert line["timing_restarts"] == 1 and line["pulses_unguaranteed"] == scheduler.unguaranteed >= 1
    rows, events = archive_rows(tmp_path)
    assert len(rows) == parts and all(r["verdict"] == "NG" for r in rows)
    assert len(events_of(events, "timing_died")) == 1
    fires = _fires(tmp_path)
    assert sorted(p for p, _, _ in fires) == sorted(r["part_id"] for r in rows), "every reject: one fires row"
    died = [p for p, t, err in fires if err == "timing process died"]
    assert len(died) == line["pulses_unguaranteed"] and all(t is None for p, t, err in fires if p in died)
    assert stats.missed_fires >= len(died) and report["missed_fires"] == stats.missed_fires
