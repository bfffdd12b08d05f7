"""The Modbus TCP ejector against a real pymodbus server on 127.0.0.1."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("pymodbus", reason="needs the [station] extra")

from station_helpers import free_port, station_cfg  # noqa: E402
from modbus_server import PlcServer  # noqa: E402

from defectgate.actuators import open_actuator  # noqa: E402
from defectgate.clock import MonotonicClock  # noqa: E402
from defectgate.errors import ActuatorError  # noqa: E402
from defectgate.station import build_station  # noqa: E402


def _wait(cond, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def test_fire_writes_the_coil_on_then_off():
    plc = PlcServer(free_port()).start()
    try:
        act = open_actuator("modbus", {"host": "127.0.0.1", "port": plc.port, "coil": 5}, MonotonicClock())
        assert act.connected
        assert plc.coil(5) is False
        act.fire(0.5)
        assert _wait(lambda: plc.coil(5)), "the coil goes on at fire()"
        assert _wait(lambda: not plc.coil(5)), "and off again after the pulse"
        act.close()
    finally:
        plc.stop()


def test_plc_down_fails_fast_with_a_clear_message_and_recovers():
    port = free_port()
    act = open_actuator("modbus", {"host": "127.0.0.1", "port": port, "coil": 1, "reconnect_s": 0.1},
                        MonotonicClock())
    with pytest.raises(ActuatorError, match=rf"127.0.0.1:{port} is unreachable"):
        act.fire(0.01)
    plc = PlcServer(port).start()
    try:
        assert _wait(lambda: act.connected), "the actuator should reconnect once the PLC is back"
        act.fire(1.0)
        assert _wait(lambda: plc.coil(1))
        act.close()
    finally:
        plc.stop()


def test_station_keeps_running_when_the_plc_is_down(tiny_bundle, tmp_path):
    port = free_port()  # nobody listens: every reject fails
    cfg = station_cfg(tiny_bundle, tmp_path, "synthetic://conveyor?parts=6&seed=2&width=96&height=72&realtime=0",
                      "actuator.kind=modbus", f"actuator.options={{host: 127.0.0.1, port: {port}, coil: 0}}",
                      "decision.thresholds={scratch: 0.0}")  # every part NG: every part must be fired
    built = build_station(cfg)
    stats = built.station.run()
    built.close()
    assert len(stats.verdicts) == 6, "every part is still judged"
    assert stats.actuator_failures == 6 and not stats.fired
    assert built.alarm.raised.get("ejector_failed", 0) >= 1
    import sqlite3

    rows = sqlite3.connect(built.archive.db_path).execute("SELECT COUNT(*), SUM(fired IS NULL) FROM fires").fetchone()
    assert rows == (6, 6), "each failed pulse is recorded with its error"


def test_encoder_counter_from_the_plc_unwraps_and_survives_a_dead_link():
    from defectgate.config import ConveyorSection, EncoderSection
    from defectgate.sources.encoder import open_encoder

    plc = PlcServer(free_port()).start()
    try:
        enc = open_encoder(EncoderSection(kind="modbus", host="127.0.0.1", port=plc.port, holding_register=10),
                           ConveyorSection(encoder_ticks_per_mm=4.0))
        plc.set_counter(10, 0xFFFFFFF0)  # just before the 32-bit rollover
        start = enc()
        plc.set_counter(10, 0x00000010)  # 32 ticks later, after the rollover
        assert enc() - start == pytest.approx(32 / 4.0)
    finally:
        plc.stop()
    assert enc() is None and enc.failures == 1, "no PLC: frames go without encoder, the line goes on"


def test_encoder_needs_ticks_per_mm():
    from defectgate.config import ConveyorSection, EncoderSection
    from defectgate.errors import ConfigError
    from defectgate.sources.encoder import open_encoder

    with pytest.raises(ConfigError, match="encoder_ticks_per_mm"):
        open_encoder(EncoderSection(kind="modbus"), ConveyorSection())
