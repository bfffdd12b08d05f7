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
from .bundle import Bundle, load_bundle
from .clock import Clock, MonotonicClock
from .config import StationConfig, TriggerMode
from .decision import build_decision
from .partscore import part_score_of
from .detector import Detector
from .inspector import Inspector
from .line.station_link import StationLine
from .parts import PartAssigner, TrackedParts, TriggeredParts
from .pipeline import Station
from .scheduler import RejectScheduler
from .sources import open_source
from .tracking import PartLocator, Tracker

log = logging.getLogger(__name__)


def build_inspector(cfg: StationConfig, clock: Clock, bundle: Bundle | None = None, shadow: bool = False) -> Inspector:
    """The live model (or, `shadow`, a candidate: the shadow section's backend and threads, one buffer),
    judging with the station's decision rules over the bundle's own thresholds."""
    if bundle is None:
        from .hotswap import resolve_bundle_path

        bundle = load_bundle(resolve_bundle_path(cfg.model.bundle))
    side = bundle.sidecar
    # the rules first: a config naming a class the model lacks is refused before an engine is opened
    decision = build_decision(side.classes, side.conf_threshold, side.class_thresholds, cfg.decision.thresholds,
                              cfg.decision.roi, cfg.decision.min_area_px, cfg.decision.ignore_classes,
                              part_score_of(side.part_score, side.classes), cfg.decision.part_threshold)
    # decode down to the lowest threshold any class uses; the decision rules apply the per-class ones.
    # One input buffer per frame that can be in flight between capture and inference (see Station).
    if shadow:
        detector = Detector(bundle, backend_name=cfg.shadow.backend.value, threads=cfg.shadow.threads,
                            conf_floor=decision.confidence_floor)
    else:
        detector = Detector(bundle, backend_name=cfg.model.backend.value, threads=cfg.model.threads,
                            compute_precision=cfg.model.compute_precision, conf_floor=decision.confidence_floor,
                            pool=cfg.pipeline.queue_size + 8 + cfg.model.streams, streams=cfg.model.streams)
    log.info("%s %s on %s", "shadow candidate" if shadow else "model", bundle.version, detector.backend.name)
    return Inspector(detector, decision, clock)


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
        """Stop the helpers, release the model's engine and flush the archive (after run() returned)."""
        if self.watcher is not None:
            self.watcher.stop()
        self.station.models.close()
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
    alarm = open_alarm(cfg.alarm.kind, cfg.alarm.options, clock)
    # the line link (issue #23): None unless the config has a `line:` section that needs one
    line = StationLine.build(cfg, clock, alarm, inspector.bundle.classes)
    if line is not None:
        source = line.wrap_source(source)
    actuator = open_actuator(cfg.actuator.kind, cfg.actuator.options, clock) \
        if line is None or line.fires_actuator else None  # else the PLC or the timing process owns it
    scheduler = line.scheduler if line is not None and line.scheduler is not None else \
        RejectScheduler(cfg.conveyor.belt_speed_mm_s, cfg.conveyor.camera_to_ejector_mm,
                        cfg.actuator.pulse_ms / 1000.0, cfg.actuator.decision_margin_ms / 1000.0)
    parts: PartAssigner = TriggeredParts(scheduler)
    if cfg.source.trigger is TriggerMode.free_run or "mode=freerun" in cfg.source.uri:
        tracker = Tracker(_probe_width(cfg, source), cfg.conveyor.fov_mm, cfg.tracking.match_tol_mm,
                          cfg.tracking.max_misses)
        parts = TrackedParts(tracker, PartLocator(cfg.tracking.min_part_area_frac, cfg.tracking.threshold), scheduler)
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
    shadow = None
    if cfg.shadow.bundle is not None:
        from .shadow import Shadow

        shadow = Shadow(cfg.shadow, lambda b: build_inspector(cfg, clock, b, shadow=True),
                        lambda: station.inspector.classes, clock, archive, telemetry, alarm)
    station = Station(inspector, source, scheduler, actuator, archive, clock, cfg.pipeline.queue_size,
                      cfg.pipeline.watchdog_s, cfg.pipeline.max_parts, overflow=cfg.pipeline.overflow,
                      parts=parts, alarm=alarm, telemetry=telemetry,
                      capture_stall_s=cfg.source.capture_stall_s, shadow=shadow, line=line)
    if line is not None:
        line.archive, line.station = archive, station
    if telemetry is not None:
        telemetry.attach(station)
    watcher = None
    if cfg.model.watch_s > 0:
        from .hotswap import BundleWatcher

        watcher = BundleWatcher(cfg.model.bundle, cfg.model.watch_s, lambda b: build_inspector(cfg, clock, b),
                                station.swap_inspector, current=inspector.bundle)
        watcher.start()
    closers = [obj for obj in (source, line, actuator, alarm, telemetry) if obj is not None]
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
