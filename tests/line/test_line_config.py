"""The `line:` config section: clear errors naming the key, and overlapping blocks refused."""

from __future__ import annotations

import pytest

from defectgate.config import load_config
from defectgate.errors import ConfigError
from defectgate.line.config import LineMode, load_line_config


def test_defaults_are_todays_behaviour():
    line = load_line_config(None)
    assert line.mode is LineMode.station_fires and line.result_block.transport.value == "none"
    assert line.result_block.fifo_size == 8 and not line.timing.process


def test_errors_name_the_key_and_the_allowed_values():
    with pytest.raises(ConfigError, match=r"line.mode: got 'plc'; allowed: 'station_fires' or 'plc_tracks'"):
        load_line_config({"mode": "plc"})
    with pytest.raises(ConfigError, match=r"line.result_block.fifo_sise: unknown key"):
        load_line_config({"result_block": {"fifo_sise": 8}})
    with pytest.raises(ConfigError, match=r"plc_tracks needs result_block.transport"):
        load_line_config({"mode": "plc_tracks"})
    with pytest.raises(ConfigError, match=r"line.inputs: map: unknown input\(s\) \['air_high'\]"):
        load_line_config({"inputs": {"kind": "modbus", "map": {"air_high": 3}}})
    with pytest.raises(ConfigError, match=r"trigger = plc needs result_block.transport"):
        load_line_config({"trigger": "plc"})
    with pytest.raises(ConfigError, match=r"line.trigger: got 'photo-eye'; allowed: 'camera' or 'plc'"):
        load_config(None, ["line.trigger=photo-eye"])
    with pytest.raises(ConfigError, match=r"window_max_ms = 10.0 must be above window_min_ms = 20.0"):
        load_line_config({"confirm": {"window_min_ms": 20, "window_max_ms": 10}})


def test_a_result_block_over_the_encoder_registers_is_refused_naming_both():
    station = load_config(None, ["source.encoder.kind=modbus", "source.encoder.port=5020",
                                 "source.encoder.holding_register=40", "conveyor.encoder_ticks_per_mm=10"])
    raw = {"mode": "plc_tracks", "result_block": {"transport": "modbus", "modbus": {"port": 5020, "base": 20}}}
    with pytest.raises(ConfigError, match=r"line.result_block.modbus \(holding registers 20..51\) overlaps "
                                          r"source.encoder \(holding registers 40..41\) on 127.0.0.1:5020 unit 1"):
        load_line_config(raw, station)
    raw["result_block"]["modbus"]["base"] = 0
    assert load_line_config(raw, station).result_block.modbus.base == 0, "0..31 leaves 40..41 free"
    raw["result_block"]["modbus"]["port"] = 502
    raw["result_block"]["modbus"]["base"] = 20
    assert load_line_config(raw, station), "another PLC (port): no overlap"


def test_coils_shared_by_the_ejector_and_the_line_stop_are_refused():
    station = load_config(None, ["actuator.kind=modbus", "actuator.options={host: 10.0.0.5, coil: 3}"])
    with pytest.raises(ConfigError, match=r"line.line_stop.options \(coils 3..3\) overlaps actuator.options"):
        load_line_config({"line_stop": {"kind": "modbus", "options": {"host": "10.0.0.5", "coil": 3}}}, station)
    with pytest.raises(ConfigError, match=r"line.inputs.map.reject_confirm \(discrete inputs 1..1\) overlaps "
                                          r"line.inputs.map.bin_full"):
        load_line_config({"inputs": {"kind": "modbus", "map": {"reject_confirm": 1, "bin_full": 1}}})
