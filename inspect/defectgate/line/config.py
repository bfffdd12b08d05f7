"""The `line:` config section (pydantic, the same error style as defectgate.config): how the
station is bonded to the line. `check_overlaps` refuses a result block that shares Modbus
addresses with another block of the station config (encoder counter, ejector / alarm / line-stop
coils, input bits), naming both."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, ValidationError, model_validator

from ..config import OutputKind, _Section
from ..errors import ConfigError
from .block import BLOCK_WORDS

if TYPE_CHECKING:  # config.py imports this module for StationConfig.line
    from ..config import StationConfig


class LineMode(str, enum.Enum):
    station_fires = "station_fires"  # the station times the ejector (today's behaviour)
    plc_tracks = "plc_tracks"  # the station writes a result per part; the PLC's shift register fires


class TriggerKind(str, enum.Enum):
    camera = "camera"  # frames come as the source delivers them (a hardware-triggered camera, a photo-eye)
    plc = "plc"  # the station takes one frame per PLC trigger read from the block (a fieldbus trigger)


class TransportKind(str, enum.Enum):
    none = "none"
    modbus = "modbus"  # the station is the client of the PLC's holding registers
    modbus_server = "modbus_server"  # the station serves the block; the PLC polls
    s7 = "s7"  # a Siemens S7 data block (snap7)


class ModbusBlock(_Section):
    host: str = "127.0.0.1"
    port: int = Field(502, ge=1, le=65535)
    base: int = Field(0, ge=0, le=65536 - BLOCK_WORDS, description="first holding register of the 32-word block")
    unit: int = Field(1, ge=0, le=255)
    timeout_ms: float = Field(100.0, gt=0)


class ModbusServerBlock(_Section):
    host: str = "0.0.0.0"
    port: int = Field(5020, ge=1, le=65535)
    base: int = Field(0, ge=0, le=65536 - BLOCK_WORDS)


class S7Block(_Section):
    host: str = "127.0.0.1"
    port: int = Field(102, ge=1, le=65535)
    rack: int = Field(0, ge=0)
    slot: int = Field(1, ge=0)
    db: int = Field(100, ge=1)
    start: int = Field(0, ge=0, description="byte offset of the 64-byte block in the DB")


class ResultBlockSection(_Section):
    transport: TransportKind = TransportKind.none
    modbus: ModbusBlock = Field(default_factory=ModbusBlock)
    modbus_server: ModbusServerBlock = Field(default_factory=ModbusServerBlock)
    s7: S7Block = Field(default_factory=S7Block)
    fifo_size: int = Field(8, ge=1, le=1024, description="results waiting for an ack")
    # must be shorter than the part's travel from camera to ejector: a result acked later is useless
    ack_timeout_ms: float = Field(500.0, gt=0)
    heartbeat_ms: float = Field(100.0, gt=0)
    cycle_ms: float = Field(10.0, gt=0, description="one block exchange per cycle")
    plc_timeout_ms: float = Field(1000.0, gt=0, description="PLC heartbeat standing still this long: PLC stale")
    reconnect_ms: float = Field(1000.0, gt=0)


class OpcUaSection(_Section):
    enabled: bool = False
    host: str = "0.0.0.0"
    port: int = Field(4840, ge=0, le=65535, description="0 = any free port (tests)")
    users_file: Path | None = Field(None, description="'user:password' lines (pbkdf2 hashes allowed); "
                                                      "without it the server is read-only for everyone")


class InputKind(str, enum.Enum):
    none = "none"
    simulated = "simulated"
    jetson_gpio = "jetson_gpio"
    gpiod = "gpiod"
    modbus = "modbus"  # discrete inputs of a PLC / remote I/O


INPUT_NAMES = ("reject_confirm", "bin_full", "air_low", "line_running")


class InputsSection(_Section):
    kind: InputKind = InputKind.none
    # input name -> pin (jetson_gpio), line offset (gpiod) or discrete input address (modbus)
    map: dict[str, int] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict, description="driver options: host/port/unit, chip, "
                                                                      "numbering, active_low")
    poll_ms: float = Field(2.0, gt=0, description="how often the inputs are read (edge detection)")

    @model_validator(mode="after")
    def _names(self) -> "InputsSection":
        unknown = sorted(set(self.map) - set(INPUT_NAMES))
        if unknown:
            raise ValueError(f"map: unknown input(s) {unknown}; allowed: {', '.join(INPUT_NAMES)}")
        return self


class ConfirmSection(_Section):
    """A sensor after the ejector (or in the bin) must see each rejected part in its window."""
    enabled: bool = False
    window_min_ms: float = Field(20.0, ge=0, description="earliest the sensor can see the part after the pulse")
    window_max_ms: float = Field(250.0, gt=0, description="latest; later the reject counts unconfirmed")
    stop_after: int = Field(3, ge=1, description="unconfirmed rejects in a row that set the line-stop output")

    @model_validator(mode="after")
    def _window(self) -> "ConfirmSection":
        if self.window_max_ms <= self.window_min_ms:
            raise ValueError(f"window_max_ms = {self.window_max_ms} must be above window_min_ms = {self.window_min_ms}")
        return self


class OutputSection(_Section):
    kind: OutputKind = OutputKind.none
    options: dict[str, Any] = Field(default_factory=dict)


class TimingSection(_Section):
    process: bool = Field(False, description="station_fires: time the ejector in a process of its own")
    heartbeat_ms: float = Field(50.0, gt=0)
    dead_after_ms: float = Field(250.0, gt=0, description="no heartbeat this long: the timing process is dead")


class LineSection(_Section):
    mode: LineMode = LineMode.station_fires
    # camera: each captured part takes the oldest trigger ID the PLC reported (else its own part id);
    # plc: one frame per PLC trigger, whose acquisition ID becomes the part id (docs/line-integration.md)
    trigger: TriggerKind = TriggerKind.camera
    result_block: ResultBlockSection = Field(default_factory=ResultBlockSection)
    opcua: OpcUaSection = Field(default_factory=OpcUaSection)
    inputs: InputsSection = Field(default_factory=InputsSection)
    confirm: ConfirmSection = Field(default_factory=ConfirmSection)
    line_stop: OutputSection = Field(default_factory=OutputSection)
    timing: TimingSection = Field(default_factory=TimingSection)

    @model_validator(mode="after")
    def _mode(self) -> "LineSection":
        if self.mode is LineMode.plc_tracks and self.result_block.transport is TransportKind.none:
            raise ValueError("mode = plc_tracks needs result_block.transport (modbus, modbus_server or s7): "
                             "the PLC must get the results")
        if self.trigger is TriggerKind.plc and self.result_block.transport is TransportKind.none:
            raise ValueError("trigger = plc needs result_block.transport: the PLC's triggers are read from the block")
        if self.confirm.enabled and "reject_confirm" not in self.inputs.map and self.mode is LineMode.station_fires:
            raise ValueError("confirm.enabled needs inputs.map.reject_confirm (the sensor's pin or address)")
        return self


# ---- address overlaps ----
def _modbus_blocks(line: LineSection, station: "StationConfig | None") -> list[tuple[str, tuple, int, int]]:
    """(config key, (host, port, unit, table), first, last) of every Modbus range the config uses."""
    out = []
    rb = line.result_block
    if rb.transport is TransportKind.modbus:
        m = rb.modbus
        out.append(("line.result_block.modbus", (m.host, m.port, m.unit, "holding registers"), m.base,
                    m.base + BLOCK_WORDS - 1))
    if line.inputs.kind is InputKind.modbus:
        o = line.inputs.options
        key = (o.get("host", "127.0.0.1"), int(o.get("port", 502)), int(o.get("unit", 1)), "discrete inputs")
        for name, addr in line.inputs.map.items():
            out.append((f"line.inputs.map.{name}", key, addr, addr))
    coil_users = [("line.line_stop.options", line.line_stop.kind.value, line.line_stop.options)]
    if station is not None:
        enc = station.source.encoder
        if enc.kind == "modbus":
            out.append(("source.encoder", (enc.host, enc.port, enc.unit, "holding registers"), enc.holding_register,
                        enc.holding_register + 1))
        coil_users += [("actuator.options", station.actuator.kind.value, station.actuator.options),
                       ("alarm.options", station.alarm.kind.value, station.alarm.options)]
    for key, kind, o in coil_users:
        if kind == "modbus" and "coil" in o:
            where = (o.get("host", "127.0.0.1"), int(o.get("port", 502)), int(o.get("unit", 1)), "coils")
            out.append((key, where, int(o["coil"]), int(o["coil"])))
    return out


def check_overlaps(line: LineSection, station: "StationConfig | None" = None) -> None:
    blocks = _modbus_blocks(line, station)
    for i, (key_a, where_a, lo_a, hi_a) in enumerate(blocks):
        for key_b, where_b, lo_b, hi_b in blocks[i + 1:]:
            if where_a == where_b and lo_a <= hi_b and lo_b <= hi_a:
                host, port, unit, table = where_a
                raise ConfigError(f"{key_a} ({table} {lo_a}..{hi_a}) overlaps {key_b} ({table} {lo_b}..{hi_b}) on "
                                  f"{host}:{port} unit {unit}; move one of them")


class _LineOnly(_Section):
    line: LineSection


def load_line_config(raw: dict[str, Any] | None, station: "StationConfig | None" = None,
                     origin: str = "station config") -> LineSection:
    """Validate a `line:` mapping on its own (tests, tools); a station config checks its `line:`
    section the same way when it is loaded (StationConfig.line)."""
    from ..config import _explain  # defined below StationConfig, which imports this module

    try:
        line = _LineOnly.model_validate({"line": raw or {}}).line  # errors then name line.<key>
    except ValidationError as exc:
        raise ConfigError(_explain(exc, origin)) from exc
    check_overlaps(line, station)
    return line
