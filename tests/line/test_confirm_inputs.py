"""Reject confirmation and the line inputs: the pure monitor on a fake clock, and the Modbus
discrete-input driver against a real server."""

from __future__ import annotations

import sys
import types

import pytest

from line_helpers import free_port

from defectgate.line.confirm import ConfirmMonitor
from defectgate.line.events import EventKind
from defectgate.line.inputs import open_inputs


def _kinds(events):
    return [(e.kind, e.part_id) for e in events]


def test_an_edge_inside_the_window_confirms_and_one_outside_does_not():
    m = ConfirmMonitor(0.02, 0.2, stop_after=3)
    m.observe({"reject_confirm": False}, 0.0)
    m.expect(1, 1.0)
    assert m.observe({"reject_confirm": True}, 1.01) == [] and m.spurious == 1, "too early: spurious"
    m.observe({"reject_confirm": False}, 1.02)
    assert _kinds(m.observe({"reject_confirm": True}, 1.05)) == [(EventKind.reject_confirmed, 1)]
    assert m.observe({"reject_confirm": True}, 1.06) == [], "a held level is one edge, not two"
    assert (m.confirmed, m.unconfirmed, m.pending) == (1, 0, 0)


def test_a_sensor_that_never_fires_counts_each_part_and_stops_the_line_after_n():
    m = ConfirmMonitor(0.02, 0.2, stop_after=3)
    events = []
    for part in range(4):
        m.expect(part, part * 1.0)
        events += m.observe({"reject_confirm": False}, part * 1.0 + 0.5)
    assert [e.part_id for e in events if e.kind is EventKind.reject_unconfirmed] == [0, 1, 2, 3]
    stops = [e for e in events if e.kind is EventKind.line_stop]
    assert len(stops) == 1 and stops[0].part_id == 2, "the third in a row latches line stop, once"
    assert m.line_stop and m.unconfirmed == 4 and list(m.unconfirmed_parts) == [0, 1, 2, 3]
    m.reset_line_stop()
    assert not m.line_stop and m.in_row == 0


def test_rejects_still_waiting_when_the_run_ends_are_unconfirmed_not_forgotten():
    m = ConfirmMonitor(0.02, 0.2, stop_after=1)
    m.observe({"reject_confirm": False}, 0.0)
    m.expect(7, 1.0)
    m.expect(8, 1.1)
    events = m.abandon(1.15)  # inside both windows: the run stopped before the sensor could say
    assert _kinds(events) == [(EventKind.reject_unconfirmed, 7), (EventKind.reject_unconfirmed, 8)]
    assert "run ended" in events[0].detail
    assert (m.pending, m.unconfirmed, list(m.unconfirmed_parts)) == (0, 2, [7, 8])
    assert not m.line_stop, "the line is stopping anyway: no line-stop latched at the end of a run"
    assert m.abandon(1.2) == [] and m.observe({"reject_confirm": True}, 1.2) == [] and m.spurious == 1


def test_a_confirm_in_between_resets_the_run():
    m = ConfirmMonitor(0.0, 0.1, stop_after=2)
    m.observe({"reject_confirm": False}, 0)
    m.expect(1, 0.0)
    m.observe({"reject_confirm": False}, 0.2)  # 1 unconfirmed
    m.expect(2, 1.0)
    m.observe({"reject_confirm": True}, 1.05)  # 2 confirmed
    m.expect(3, 2.0)
    m.observe({"reject_confirm": False}, 2.2)
    assert m.in_row == 1 and not m.line_stop


def test_state_inputs_report_changes_and_an_alarm_level_at_start():
    m = ConfirmMonitor(0.0, 0.1)
    first = m.observe({"bin_full": True, "air_low": False, "line_running": True}, 0.0)
    assert [e.detail for e in first] == ["bin_full=1"], "a full bin at start is news; a running line is not"
    assert [e.detail for e in m.observe({"bin_full": True, "air_low": True, "line_running": False}, 1.0)] == \
        ["air_low=1", "line_running=0"]
    assert m.state == {"bin_full": True, "air_low": True, "line_running": False}


def test_modbus_discrete_inputs_against_a_real_server():
    pytest.importorskip("pymodbus", reason="needs the [station] extra")
    from defectgate.line.modbus_server import RegisterServer

    plc = RegisterServer("127.0.0.1", free_port(), what="remote I/O")
    try:
        reader = open_inputs("modbus", {"reject_confirm": 4, "bin_full": 6},
                             {"host": "127.0.0.1", "port": plc.port})
        assert reader.read() == {"reject_confirm": False, "bin_full": False}
        plc.write(4, [True, False, True], fc=2)
        assert reader.read() == {"reject_confirm": True, "bin_full": True}
        reader.close()
    finally:
        plc.close()


def test_gpio_input_drivers_read_levels_through_the_library_api(monkeypatch):
    gpio = types.ModuleType("Jetson.GPIO")
    gpio.BOARD, gpio.BCM, gpio.IN = "BOARD", "BCM", "IN"
    gpio.levels = {12: 1, 13: 0}
    gpio.setmode = lambda mode: None
    gpio.setup = lambda pin, direction: gpio.levels.setdefault(pin, 0)
    gpio.input = lambda pin: gpio.levels[pin]
    gpio.cleanup = lambda pins=None: None
    jetson = types.ModuleType("Jetson")
    jetson.GPIO = gpio
    monkeypatch.setitem(sys.modules, "Jetson", jetson)
    monkeypatch.setitem(sys.modules, "Jetson.GPIO", gpio)
    reader = open_inputs("jetson_gpio", {"reject_confirm": 12, "air_low": 13}, {"active_low": True})
    assert reader.read() == {"reject_confirm": False, "air_low": True}
    from defectgate.errors import ConfigError

    with pytest.raises(ConfigError, match="line.inputs.kind 'x' is unknown"):
        open_inputs("x", {"bin_full": 1}, {})
