"""Build a Station from a StationConfig: the one place that wires sources, model, decision,
scheduler, actuator and archive together (used by `defectgate run`, `replay` and the bench)."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path

from .actuators import open_actuator
from .archive import Archive
from .backends import load_backend
from .bundle import Bundle, load_bundle
from .clock import Clock, MonotonicClock
from .config import StationConfig
from .decision import build_decision
from .pipeline import Inspector, Station
from .scheduler import RejectScheduler
from .sources import open_source

log = logging.getLogger(__name__)


def build_inspector(cfg: StationConfig, clock: Clock, bundle: Bundle | None = None) -> Inspector:
    bundle = bundle or load_bundle(cfg.model.bundle)
    backend = load_backend(bundle, cfg.model.backend.value, cfg.model.threads)
    side = bundle.sidecar
    decision = build_decision(side.classes, side.conf_threshold, side.class_thresholds, cfg.decision.thresholds,
                              cfg.decision.roi, cfg.decision.min_area_px, cfg.decision.ignore_classes)
    log.info("model %s on %s", bundle.version, backend.name)
    return Inspector(bundle, backend, decision, clock)


@dataclass
class BuiltStation:
    station: Station
    run_id: str
    run_dir: Path
    archive: Archive | None


def build_station(cfg: StationConfig, clock: Clock | None = None) -> BuiltStation:
    clock = clock or MonotonicClock()
    run_id = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = Path(cfg.station.run_dir) / run_id
    inspector = build_inspector(cfg, clock)
    source = open_source(cfg.source, cfg.conveyor, clock)
    actuator = open_actuator(cfg.actuator.kind, cfg.actuator.options, clock)
    scheduler = RejectScheduler(cfg.conveyor.belt_speed_mm_s, cfg.conveyor.camera_to_ejector_mm,
                                cfg.actuator.pulse_ms / 1000.0, cfg.actuator.decision_margin_ms / 1000.0)
    archive = None
    if cfg.archive.enabled:
        archive = Archive(Path(cfg.station.run_dir) / "archive", run_id, cfg.station.name, inspector.bundle.classes,
                          cfg.archive.save_ng_images, cfg.archive.ok_sample_rate, cfg.archive.queue_size,
                          cfg.archive.quota_mb, cfg.archive.image_format)
    station = Station(inspector, source, scheduler, actuator, archive, clock, cfg.pipeline.queue_size,
                      cfg.pipeline.watchdog_s, cfg.pipeline.max_parts)
    return BuiltStation(station, run_id, run_dir, archive)
