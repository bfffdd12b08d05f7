"""Typed station config, loaded from YAML. Unknown keys are errors; every message names the key
and, for choices, the allowed values. `--set a.b=value` overrides go through the same checks."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", use_enum_values=False)


class BackendName(str, enum.Enum):
    auto = "auto"
    onnxruntime = "onnxruntime"
    onnxruntime_cuda = "onnxruntime-cuda"
    onnxruntime_tensorrt = "onnxruntime-tensorrt"
    openvino = "openvino"
    tensorrt = "tensorrt"


class ActuatorKind(str, enum.Enum):
    simulated = "simulated"
    jetson_gpio = "jetson_gpio"
    gpiod = "gpiod"
    modbus = "modbus"


# Drivers for a plain on/off output (the alarm / stack light): the actuator drivers, or none.
OutputKind = enum.Enum("OutputKind", {"none": "none", **{k.name: k.value for k in ActuatorKind}}, type=str)


class TriggerMode(str, enum.Enum):
    free_run = "free_run"  # the camera streams; parts are found and tracked across frames
    external = "external"  # a photo-eye / PLC triggers one frame per part (part_id on the Frame)


class Overflow(str, enum.Enum):
    drop_oldest = "drop_oldest"  # live line: never fall behind the camera (dropped parts stay armed)
    block = "block"  # replay / bench: the source waits, no frame is lost


class StationSection(_Section):
    name: str = "station-1"
    run_dir: Path = Path("runs/station")


class EncoderSection(_Section):
    """A belt encoder whose count the PLC keeps in a 32-bit counter (two holding registers); read at
    every frame so that rejects follow the belt, not the clock. Ticks per mm: conveyor section."""
    kind: str = Field("none", pattern="^(none|modbus)$")
    host: str = "127.0.0.1"
    port: int = Field(502, ge=1, le=65535)
    holding_register: int = Field(0, ge=0, le=65534, description="first of the two holding registers")
    unit: int = Field(1, ge=0, le=255)
    word_order: str = Field("low_first", pattern="^(low_first|high_first)$")


class SourceSection(_Section):
    uri: str = "synthetic://conveyor"
    read_timeout_s: float = Field(1.0, gt=0)
    reconnect_backoff_s: float = Field(0.5, gt=0)
    reconnect_backoff_max_s: float = Field(10.0, gt=0)
    trigger: TriggerMode = TriggerMode.external
    # free-run only: raise the alarm when no frame came for this long (None: off, e.g. triggered lines)
    capture_stall_s: float | None = Field(None, gt=0)
    encoder: EncoderSection = Field(default_factory=EncoderSection)


class ModelSection(_Section):
    bundle: Path = Path("runs/demo/bundle")
    backend: BackendName = BackendName.auto
    threads: int = Field(0, ge=0, description="inference threads, 0 = engine default")
    # OpenVINO only: precision of float layers. bf16 is what OpenVINO (and ultralytics' OpenVINO
    # path) silently uses on CPUs with AVX512_BF16/AMX; it is faster, and cost 0.003-0.007 mAP50 on
    # NEU-DET (docs/performance.md). f32 is exact. On a CPU without it, `backend: openvino` refuses bf16 and
    # `backend: auto` computes in f32 with a warning.
    compute_precision: str = Field("f32", pattern="^(f32|bf16|f16)$")
    # OpenVINO only: parallel CPU streams, one inference thread each. 1 = lowest latency per part; 2 on a
    # 2-core x86 station judges more parts per second, each a little later (docs/performance.md)
    streams: int = Field(1, ge=1, le=16)
    # hot swap: poll the bundle folder (or a registry's `current` pointer) and load a new model
    # without stopping the line; 0 = off
    watch_s: float = Field(0.0, ge=0)


class ShadowSection(_Section):
    """A candidate model judging the same parts as the live one, never actuating (shadow.py)."""
    # a bundle folder, or a registry's `candidate` pointer (REGISTRY/candidate); None = no shadow
    bundle: Path | None = None
    backend: BackendName = BackendName.onnxruntime  # ORT: its threads inherit the shadow thread's lower priority
    threads: int = Field(1, ge=1, description="the shadow's inference threads: one leaves the line its cores")
    queue_frames: int = Field(8, ge=1, description="frames waiting for the shadow; beyond, frames are skipped, counted")
    watch_s: float = Field(5.0, ge=0, description="poll the bundle or pointer for a new candidate; 0 = load once")
    nice: int = Field(10, ge=0, le=19, description="how much lower than the line's the shadow thread's priority is")
    alarm_on_failure: bool = False  # raise the station alarm when the shadow crashes or is refused
    lossless: bool = False  # replay only: wait for the shadow instead of skipping frames (never on a live line)


class DecisionSection(_Section):
    # per-class confidence thresholds by class name; missing classes use the bundle's thresholds
    thresholds: dict[str, float] = Field(default_factory=dict)
    # region of interest as a polygon in normalised image coordinates (0..1); None = whole image
    roi: list[tuple[float, float]] | None = None
    min_area_px: float = Field(0.0, ge=0)
    ignore_classes: list[str] = Field(default_factory=list)
    # for a bundle that decides with a part score (sidecar part_score): its threshold instead of the
    # calibrated one (lower rejects more); None = the bundle's
    part_threshold: float | None = Field(None, ge=0, le=1)

    @model_validator(mode="after")
    def _check(self) -> "DecisionSection":
        for name, t in self.thresholds.items():
            if not 0 <= t <= 1:
                raise ValueError(f"thresholds.{name} = {t} must be between 0 and 1")
        if self.roi is not None and len(self.roi) < 3:
            raise ValueError(f"roi needs at least 3 points, got {len(self.roi)}")
        return self


class ConveyorSection(_Section):
    belt_speed_mm_s: float = Field(600.0, gt=0)
    # distance along the belt from the camera's optical axis to the ejector nozzle / pusher
    camera_to_ejector_mm: float = 300.0
    fov_mm: float = Field(160.0, gt=0, description="field of view along the belt at the part plane")
    part_pitch_mm: float = Field(120.0, gt=0, description="spacing of parts on the belt (synthetic line)")
    encoder_ticks_per_mm: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _geometry(self) -> "ConveyorSection":
        if self.camera_to_ejector_mm <= self.fov_mm / 2:
            raise ValueError(
                f"camera_to_ejector_mm = {self.camera_to_ejector_mm} puts the ejector inside or before the "
                f"camera's field of view (fov_mm/2 = {self.fov_mm / 2}); the ejector must be downstream of the camera"
            )
        return self


class TrackingSection(_Section):
    """Free-run only: find parts in each frame (bright part on a darker belt) and associate them
    across frames by belt position, so each physical part gets one verdict."""
    match_tol_mm: float = Field(30.0, gt=0, description="max belt-position distance to join a track")
    min_part_area_frac: float = Field(0.01, gt=0, lt=1, description="smallest blob that is a part, of the frame")
    threshold: int | None = Field(None, ge=0, le=255, description="grey level part/belt; None = Otsu per frame")
    max_misses: int = Field(2, ge=1, description="frames a part may go unseen before its track closes")


class AlarmSection(_Section):
    kind: OutputKind = OutputKind.simulated
    options: dict[str, Any] = Field(default_factory=dict, description="driver options: pin, chip/line, host/coil")


class TelemetrySection(_Section):
    prometheus_port: int | None = Field(None, ge=0, le=65535, description="serve /metrics here; 0 = any free port")
    mqtt_host: str | None = None
    mqtt_port: int = Field(1883, ge=1, le=65535)
    mqtt_topic: str = "defectgate"
    health_interval_s: float = Field(5.0, gt=0)


class ActuatorSection(_Section):
    kind: ActuatorKind = ActuatorKind.simulated
    pulse_ms: float = Field(30.0, gt=0, le=2000)
    # time needed between the decision and the fire moment to cancel a pre-armed reject
    decision_margin_ms: float = Field(5.0, ge=0)
    options: dict[str, Any] = Field(default_factory=dict, description="driver options: pin, host, port, coil...")


class ArchiveSection(_Section):
    enabled: bool = True
    save_ng_images: bool = True
    ok_sample_rate: float = Field(0.0, ge=0, le=1)
    queue_size: int = Field(256, ge=1)
    quota_mb: float = Field(2048.0, gt=0)
    image_format: str = Field("jpg", pattern="^(jpg|png)$")


class PipelineSection(_Section):
    queue_size: int = Field(4, ge=1, description="frames waiting for inference; the oldest is dropped when full")
    watchdog_s: float = Field(2.0, gt=0)
    max_parts: int | None = Field(None, ge=1)
    overflow: Overflow = Overflow.drop_oldest


# ---- line: the station's bond to the line (issue #23; the section lives in line/config.py, which
# imports _Section and OutputKind from here, hence the import below them) ----
from .line.config import LineSection, check_overlaps  # noqa: E402


class StationConfig(_Section):
    station: StationSection = Field(default_factory=StationSection)
    source: SourceSection = Field(default_factory=SourceSection)
    model: ModelSection = Field(default_factory=ModelSection)
    shadow: ShadowSection = Field(default_factory=ShadowSection)
    decision: DecisionSection = Field(default_factory=DecisionSection)
    conveyor: ConveyorSection = Field(default_factory=ConveyorSection)
    actuator: ActuatorSection = Field(default_factory=ActuatorSection)
    archive: ArchiveSection = Field(default_factory=ArchiveSection)
    pipeline: PipelineSection = Field(default_factory=PipelineSection)
    tracking: TrackingSection = Field(default_factory=TrackingSection)
    alarm: AlarmSection = Field(default_factory=AlarmSection)
    telemetry: TelemetrySection = Field(default_factory=TelemetrySection)
    line: LineSection = Field(default_factory=LineSection)

    @model_validator(mode="after")
    def _line_addresses(self) -> "StationConfig":
        check_overlaps(self.line, self)  # a ConfigError naming both keys; load_config adds the file
        return self


def _explain(exc: ValidationError, origin: str) -> str:
    lines = []
    for err in exc.errors()[:5]:
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see configs/demo-station.yaml for all keys)"
        elif err["type"] == "enum":
            msg = f"got {err.get('input')!r}; allowed: {err.get('ctx', {}).get('expected', '')}"
        lines.append(f"{key}: {msg}")
    return f"{origin}: " + "; ".join(lines)


def apply_override(raw: dict[str, Any], assignment: str) -> None:
    """Apply 'a.b.c=value' to a nested dict; value is parsed as a YAML scalar."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE, e.g. model.backend=onnxruntime")
    key, value = assignment.split("=", 1)
    parts = key.strip().split(".")
    node = raw
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: '{part}' is not a section")
    try:
        node[parts[-1]] = yaml.safe_load(value) if value != "" else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {key}: value {value!r} is not valid YAML ({exc})") from exc


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> StationConfig:
    raw: dict[str, Any] = {}
    origin = "defaults"
    if path is not None:
        path = Path(path)
        origin = str(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found (example: configs/demo-station.yaml)")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark else ""
            raise ConfigError(f"{path}:{where} is not valid YAML: {getattr(exc, 'problem', exc)}") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: top level must be a mapping of sections, got {type(raw).__name__}")
    for assignment in overrides or []:
        apply_override(raw, assignment)
    try:
        return StationConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, origin)) from exc
    except ConfigError as exc:  # line: overlapping Modbus addresses (check_overlaps)
        raise ConfigError(f"{origin}: {exc}") from exc
