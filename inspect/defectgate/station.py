"""Build a Station from a StationConfig: the one place that wires sources, model, decision,
scheduler, actuator, alarm, tracking, telemetry, hot swap and archive together (used by
`defectgate run`, `replay` and the bench)."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .actuators import open_actuator
from .actuators.alarm import Alarm, open_alarm
from .archive import Archive
from .backends import load_backend
from .bundle import Bundle, load_bundle
from .clock import Clock, MonotonicClock
from .config import StationConfig, TriggerMode
from .decision import build_decision
from .pipeline import Inspector, Station
from .scheduler import RejectScheduler
from .sources import open_source
from .tracking import PartLocator, Tracker

log = logging.getLogger(__name__)


def build_inspector(cfg: StationConfig, clock: Clock, bundle: Bundle | None = None) -> Inspector:
    if bundle is None:
        from .hotswap import resolve_bundle_path

        bundle = load_bundle(resolve_bundle_path(cfg.model.bundle))
    backend = load_backend(bundle, cfg.model.backend.value, cfg.model.threads, cfg.model.compute_precision)
    side = bundle.sidecar
    decision = build_decision(side.classes, side.conf_threshold, side.class_thresholds, cfg.decision.thresholds,
                              cfg.decision.roi, cfg.decision.min_area_px, cfg.decision.ignore_classes)
    log.info("model %s on %s", bundle.version, backend.name)
    return Inspector(bundle, backend, decision, clock, pool=cfg.pipeline.queue_size + 8)


@dataclass
class BuiltStation:
    station: Station
    run_id: str
    run_dir: Path
    archive: Archive | None
    alarm: Alarm | None = None
    telemetry: Any = None
    watcher: Any = None
    closers: list[Any] = field(default_factory=list)

    def close(self) -> None:
        """Stop the helpers and flush the archive (after run() returned)."""
        if self.watcher is not None:
            self.watcher.stop()
        for obj in self.closers:
            try:
                obj.close()
            except Exception as exc:  # shutting down: report and go on closing the rest
                log.warning("closing %s: %s", type(obj).__name__, exc)
        if self.archive is not None:
            self.archive.close()


def build_station(cfg: StationConfig, clock: Clock | None = None, source: Any = None) -> BuiltStation:
    clock = clock or MonotonicClock()
    run_id = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")[:-3]
    run_dir = Path(cfg.station.run_dir) / run_id
    inspector = build_inspector(cfg, clock)
    source = source or open_source(cfg.source, cfg.conveyor, clock)
    actuator = open_actuator(cfg.actuator.kind, cfg.actuator.options, clock)
    alarm = open_alarm(cfg.alarm.kind, cfg.alarm.options, clock)
    scheduler = RejectScheduler(cfg.conveyor.belt_speed_mm_s, cfg.conveyor.camera_to_ejector_mm,
                                cfg.actuator.pulse_ms / 1000.0, cfg.actuator.decision_margin_ms / 1000.0)
    tracker = locator = None
    free_run = cfg.source.trigger is TriggerMode.free_run or "mode=freerun" in cfg.source.uri
    if free_run:
        width = _probe_width(cfg, source)
        tracker = Tracker(width, cfg.conveyor.fov_mm, cfg.tracking.match_tol_mm, cfg.tracking.max_misses)
        locator = PartLocator(cfg.tracking.min_part_area_frac, cfg.tracking.threshold)
    archive = None
    if cfg.archive.enabled:
        archive = Archive(Path(cfg.station.run_dir) / "archive", run_id, cfg.station.name, inspector.bundle.classes,
                          cfg.archive.save_ng_images, cfg.archive.ok_sample_rate, cfg.archive.queue_size,
                          cfg.archive.quota_mb, cfg.archive.image_format)
        archive.start_run(inspector.version, inspector.backend.name, cfg.model_dump_json())
    telemetry = None
    if cfg.telemetry.prometheus_port is not None or cfg.telemetry.mqtt_host:
        from .telemetry import Telemetry

        telemetry = Telemetry(cfg.station.name, cfg.telemetry, inspector.version, inspector.bundle.classes)
    station = Station(inspector, source, scheduler, actuator, archive, clock, cfg.pipeline.queue_size,
                      cfg.pipeline.watchdog_s, cfg.pipeline.max_parts, overflow=cfg.pipeline.overflow,
                      tracker=tracker, locator=locator, alarm=alarm, telemetry=telemetry,
                      capture_stall_s=cfg.source.capture_stall_s)
    if telemetry is not None:
        telemetry.attach(station)
    watcher = None
    if cfg.model.watch_s > 0:
        from .hotswap import BundleWatcher

        watcher = BundleWatcher(cfg.model.bundle, cfg.model.watch_s, lambda b: build_inspector(cfg, clock, b),
                                station.swap_inspector, current=inspector.bundle)
        watcher.start()
    closers = [source, actuator, alarm] + ([telemetry] if telemetry is not None else [])
    return BuiltStation(station, run_id, run_dir, archive, alarm, telemetry, watcher, closers)


def _probe_width(cfg: StationConfig, source: Any) -> int:
    """Image width for the tracker: the synthetic source knows it; other sources are read from the
    `tracking` geometry at the first frame (the Tracker only needs px per mm)."""
    hw = getattr(source, "hw", None)
    if hw is not None:
        return int(hw[1])
    width = getattr(source, "width", None)
    if width:
        return int(width)
    from .errors import ConfigError

    raise ConfigError(f"source.trigger = free_run: cannot tell the image width of {cfg.source.uri}; "
                      "use a source that reports it (synthetic, file video, camera with ?width=)")
