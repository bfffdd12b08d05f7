"""GPIO drivers and the alarm output. The pin libraries (Jetson.GPIO, libgpiod) cannot work without
the hardware, so only those modules are replaced by recording fakes with the same API; the
drivers, the pulse thread and the alarm logic are the real ones."""

from __future__ import annotations

import enum
import json
import sys
import time
import types

import pytest

from defectgate.actuators import open_actuator
from defectgate.actuators.alarm import Alarm, SimulatedOutput, open_alarm
from defectgate.clock import MonotonicClock
from defectgate.errors import ActuatorError, ConfigError, MissingExtraError


def _wait(cond, timeout=3.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end and not cond():
        time.sleep(0.005)
    return cond()


@pytest.fixture
def fake_jetson_gpio(monkeypatch):
    """Jetson.GPIO's module API: setmode, setup, output, cleanup, BOARD/BCM/OUT/HIGH/LOW."""
    gpio = types.ModuleType("Jetson.GPIO")
    gpio.BOARD, gpio.BCM, gpio.OUT, gpio.HIGH, gpio.LOW = "BOARD", "BCM", "OUT", 1, 0
    gpio.levels = []
    gpio.setmode = lambda mode: setattr(gpio, "mode", mode)

    def setup(pin, direction, initial=0):
        if pin not in (7, 11, 12, 13, 15):
            raise ValueError(f"The channel sent is invalid on a Jetson board: {pin}")
        gpio.levels.append((pin, initial))

    gpio.setup = setup
    gpio.output = lambda pin, level: gpio.levels.append((pin, level))
    gpio.cleanup = lambda pin=None: gpio.levels.append((pin, "cleanup"))
    jetson = types.ModuleType("Jetson")
    jetson.GPIO = gpio
    monkeypatch.setitem(sys.modules, "Jetson", jetson)
    monkeypatch.setitem(sys.modules, "Jetson.GPIO", gpio)
    return gpio


@pytest.fixture
def fake_gpiod(monkeypatch):
    """libgpiod v2: gpiod.request_lines(chip, consumer=, config={offset: LineSettings}) -> request."""
    gpiod = types.ModuleType("gpiod")
    line = types.ModuleType("gpiod.line")

    class Direction(enum.Enum):
        INPUT, OUTPUT = 1, 2

    class Value(enum.Enum):
        INACTIVE, ACTIVE = 0, 1

    line.Direction, line.Value = Direction, Value

    class LineSettings:
        def __init__(self, direction=None, output_value=None, active_low=False):
            self.direction, self.output_value, self.active_low = direction, output_value, active_low

    class Request:
        def __init__(self, config):
            self.values = [(off, s.output_value) for off, s in config.items()]
            self.released = False

        def set_value(self, offset, value):
            self.values.append((offset, value))

        def release(self):
            self.released = True

    def request_lines(chip, consumer="", config=None):
        if chip != "/dev/gpiochip0":
            raise OSError(2, "No such file or directory", chip)
        gpiod.last = Request(config)
        return gpiod.last

    gpiod.LineSettings, gpiod.request_lines, gpiod.line = LineSettings, request_lines, line
    monkeypatch.setitem(sys.modules, "gpiod", gpiod)
    monkeypatch.setitem(sys.modules, "gpiod.line", line)
    return gpiod


def test_jetson_gpio_pulse_goes_high_then_low(fake_jetson_gpio):
    act = open_actuator("jetson_gpio", {"pin": 12}, MonotonicClock())
    assert fake_jetson_gpio.mode == "BOARD"
    act.fire(0.02)
    assert _wait(lambda: fake_jetson_gpio.levels[-1] == (12, 0) and (12, 1) in fake_jetson_gpio.levels)
    assert fake_jetson_gpio.levels == [(12, 0), (12, 1), (12, 0)]
    act.close()


def test_jetson_gpio_active_low_and_bad_pin(fake_jetson_gpio):
    act = open_actuator("jetson_gpio", {"pin": 7, "active_high": False}, MonotonicClock())
    act.set(True)
    assert fake_jetson_gpio.levels[-1] == (7, 0)  # active low: on = LOW
    with pytest.raises(ActuatorError, match="pin 3"):
        open_actuator("jetson_gpio", {"pin": 3}, MonotonicClock())
    with pytest.raises(ConfigError, match="numbering"):
        open_actuator("jetson_gpio", {"pin": 7, "numbering": "WIRING"}, MonotonicClock())


def test_gpiod_v2_pulse_and_missing_chip(fake_gpiod):
    act = open_actuator("gpiod", {"line": 17}, MonotonicClock())
    value = fake_gpiod.line.Value
    act.fire(0.02)
    assert _wait(lambda: fake_gpiod.last.values[-1] == (17, value.INACTIVE) and len(fake_gpiod.last.values) == 3)
    assert fake_gpiod.last.values == [(17, value.INACTIVE), (17, value.ACTIVE), (17, value.INACTIVE)]
    act.close()
    assert fake_gpiod.last.released
    with pytest.raises(ActuatorError, match="/dev/gpiochip9 line 3"):
        open_actuator("gpiod", {"line": 3, "chip": "/dev/gpiochip9"}, MonotonicClock())


def test_drivers_name_the_extra_when_the_library_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "Jetson.GPIO", None)
    monkeypatch.setitem(sys.modules, "gpiod", None)
    with pytest.raises(MissingExtraError, match=r"defectgate\[jetson\]"):
        open_actuator("jetson_gpio", {"pin": 12}, MonotonicClock())
    with pytest.raises(MissingExtraError, match=r"defectgate\[jetson\]"):
        open_actuator("gpiod", {"line": 1}, MonotonicClock())


def test_overlapping_pulses_merge_into_one(fake_jetson_gpio):
    act = open_actuator("jetson_gpio", {"pin": 12}, MonotonicClock())
    act.fire(0.05)
    act.fire(0.05)  # a second part right behind: the output stays on, goes off once
    assert _wait(lambda: fake_jetson_gpio.levels[-1] == (12, 0) and len(fake_jetson_gpio.levels) >= 4)
    time.sleep(0.1)
    assert fake_jetson_gpio.levels == [(12, 0), (12, 1), (12, 1), (12, 0)]
    act.close()


def test_alarm_is_on_while_any_condition_holds():
    out = SimulatedOutput()
    alarm = Alarm(out)
    alarm.raise_("camera_lost", "usb://0")
    alarm.raise_("ejector_failed")
    alarm.raise_("camera_lost")  # already active: no new edge, no new count
    alarm.clear("camera_lost")
    assert out.state is True and alarm.on
    alarm.clear("ejector_failed")
    assert out.state is False and not alarm.on
    assert [s for _, s in out.changes] == [True, False]
    assert alarm.raised == {"camera_lost": 1, "ejector_failed": 1}


def test_alarm_output_failure_does_not_break_the_logic():
    class Broken:
        name = "broken"

        def set(self, on):
            raise ActuatorError("coil write failed")

        def close(self):
            pass

    alarm = Alarm(Broken())
    alarm.raise_("inference_stalled")
    assert alarm.on and alarm.output_failures == 1


def test_alarm_kinds(fake_jetson_gpio):
    assert open_alarm("none", {}, MonotonicClock()).output is None
    lamp = open_alarm("jetson_gpio", {"pin": 13}, MonotonicClock())
    lamp.raise_("x")
    assert fake_jetson_gpio.levels[-1] == (13, 1)
    with pytest.raises(ConfigError, match="alarm.kind 'siren'"):
        open_alarm("siren", {}, MonotonicClock())


def test_simulated_ejector_keeps_every_pulse_in_its_log_and_only_the_recent_ones_in_memory(tmp_path):
    """A station runs for months: the simulated ejector's memory stays bounded while its log holds
    every pulse, and the log appears whole, at close (a reader never sees half of it)."""
    from defectgate.actuators.simulated import RECENT_PULSES
    from defectgate.clock import FakeClock

    clock, log = FakeClock(), tmp_path / "ejector" / "fires.jsonl"
    ejector = open_actuator("simulated", {"log": str(log)}, clock)
    n = RECENT_PULSES * 3 + 7
    for i in range(n):
        clock.advance(0.1)
        ejector.fire(0.02)
    assert len(ejector.recent) == RECENT_PULSES and ejector.pulses == n
    assert ejector.recent[-1][0] == pytest.approx(clock.now())
    assert not log.exists(), "the log is published at close, not half-way"
    ejector.close()
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert len(lines) == n and lines[0] == {"t": pytest.approx(0.1), "duration_s": 0.02}
    assert lines[-1]["t"] == pytest.approx(clock.now())
    assert [p.name for p in log.parent.iterdir()] == ["fires.jsonl"], "no temp file left behind"


def test_simulated_ejector_log_that_cannot_be_written_is_named_when_the_station_opens(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with pytest.raises(ConfigError, match=r"actuator.options.log .*not-a-folder/fires.jsonl"):
        open_actuator("simulated", {"log": str(blocker / "fires.jsonl")}, MonotonicClock())
