"""Telemetry: Prometheus `/metrics` and optional MQTT publishing of verdicts and health.

Both libraries are optional (extra [station]) and imported only when configured. Nothing here may
slow the line: metric updates are in-memory counters; MQTT publishes go to paho's own network
thread through a bounded queue (a dead broker drops messages, it never blocks a verdict).

Prometheus metrics (all prefixed `defectgate_`): parts_total{verdict}, rejects_total{reason},
escapes_total / overkills_total (when ground truth is known: synthetic or labelled replay),
stage_seconds{stage} histograms (preprocess, inference, decide, total = capture to verdict),
frames_dropped_total, missed_deadlines_total, fires_total{result}, model_info{version}, alarm
(1 while any alarm condition is active), archive_images_dropped; in shadow mode
shadow_parts_total{comparison: agree | live_only_ng | shadow_only_ng} and shadow_frames_skipped; with a
`line:` section the line link's counters (line_results_delivered_total, line_rejects_unconfirmed_total,
...: line/stats.py) and line_link_up.

MQTT topics under `<mqtt_topic>/<station>/`: `verdict` (one JSON per part, QoS 0), `shadow` (the
candidate's verdict per part beside the live one, shadow mode only), `health` (JSON
every health_interval_s, QoS 1), `status` (`online` / `offline`, retained; `offline` is the
broker-side last will, so subscribers see a station that died without saying goodbye)."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, Sequence

from .config import TelemetrySection
from .errors import require
from .types import Verdict

log = logging.getLogger(__name__)

_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)


class Telemetry:
    def __init__(self, station: str, cfg: TelemetrySection, model_version: str, classes: Sequence[str]):
        self.station_name, self.cfg = station, cfg
        self.port: int | None = None
        self._station: Any = None
        self._server = None
        self._mqtt = None
        self._stop = threading.Event()
        self._health_thread: threading.Thread | None = None
        self.published = 0
        self._prom = cfg.prometheus_port is not None
        if self._prom:
            self._setup_prometheus(model_version)
        if cfg.mqtt_host:
            self._setup_mqtt()

    # ---- Prometheus ----
    def _setup_prometheus(self, model_version: str) -> None:
        prom = require("prometheus_client", "station", "Prometheus /metrics")
        self.registry = reg = prom.CollectorRegistry()
        self.parts = prom.Counter("defectgate_parts", "parts judged", ["verdict"], registry=reg)
        self.rejects = prom.Counter("defectgate_rejects", "NG verdicts by reason", ["reason"], registry=reg)
        self.escapes = prom.Counter("defectgate_escapes", "NG parts passed as OK (truth known)", registry=reg)
        self.overkills = prom.Counter("defectgate_overkills", "OK parts judged NG (truth known)", registry=reg)
        self.stage = prom.Histogram("defectgate_stage_seconds", "time per pipeline stage", ["stage"],
                                    buckets=_BUCKETS, registry=reg)
        self.dropped = prom.Counter("defectgate_frames_dropped", "frames dropped because inference lagged",
                                    registry=reg)
        self.missed = prom.Counter("defectgate_missed_deadlines", "verdicts too late: part rejected fail-safe",
                                   registry=reg)
        self.fires = prom.Counter("defectgate_fires", "ejector pulses", ["result"], registry=reg)
        self.model = prom.Gauge("defectgate_model_info", "model version in use (value 1)", ["version"], registry=reg)
        self.model.labels(model_version).set(1)
        self._version = model_version
        alarm = prom.Gauge("defectgate_alarm", "1 while any alarm condition is active", registry=reg)
        alarm.set_function(lambda: float(bool(self._station and self._station.alarm and self._station.alarm.on)))
        self.shadow_parts = prom.Counter("defectgate_shadow_parts", "parts the shadow candidate judged, by how its "
                                         "verdict compares with the live one", ["comparison"], registry=reg)
        skipped = prom.Gauge("defectgate_shadow_frames_skipped", "frames the shadow candidate had no time for",
                             registry=reg)
        skipped.set_function(lambda: float(self._station.shadow.stats.frames_skipped)
                             if self._station is not None and self._station.shadow is not None else 0.0)
        arch = prom.Gauge("defectgate_archive_images_dropped", "images the archive could not keep", registry=reg)
        arch.set_function(lambda: float(self._station.archive.stats.images_dropped)
                          if self._station is not None and self._station.archive is not None else 0.0)
        from .line.stats import PrometheusCollector  # the line link's counters (issue #23)

        reg.register(PrometheusCollector(lambda: self._station.stats.line if self._station is not None else None))
        server = prom.start_http_server(self.cfg.prometheus_port, addr="0.0.0.0", registry=reg)
        if isinstance(server, tuple):  # prometheus-client >= 0.17 returns (server, thread)
            self._server = server[0]
            self.port = self._server.server_address[1]
        else:
            self.port = self.cfg.prometheus_port
        log.info("Prometheus metrics on :%s/metrics", self.port)

    # ---- MQTT ----
    def _setup_mqtt(self) -> None:
        mqtt = require("paho.mqtt.client", "station", "MQTT telemetry")
        base = f"{self.cfg.mqtt_topic}/{self.station_name}"
        self.topic_verdict, self.topic_health, self.topic_status = f"{base}/verdict", f"{base}/health", f"{base}/status"
        self.topic_shadow = f"{base}/shadow"
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"defectgate-{self.station_name}")
        client.max_queued_messages_set(1000)
        client.will_set(self.topic_status, "offline", qos=1, retain=True)
        client.reconnect_delay_set(1, 30)

        def on_connect(c, _userdata, _flags, reason, _props):
            if not reason.is_failure:
                c.publish(self.topic_status, "online", qos=1, retain=True)
                log.info("MQTT connected to %s:%s", self.cfg.mqtt_host, self.cfg.mqtt_port)

        client.on_connect = on_connect
        client.connect_async(self.cfg.mqtt_host, self.cfg.mqtt_port, keepalive=30)
        client.loop_start()
        self._mqtt = client
        self._health_thread = threading.Thread(target=self._health_loop, name="mqtt-health", daemon=True)
        self._health_thread.start()

    def _publish(self, topic: str, payload: dict | str, qos: int = 0, retain: bool = False) -> None:
        if self._mqtt is None:
            return
        data = payload if isinstance(payload, str) else json.dumps(payload)
        info = self._mqtt.publish(topic, data, qos=qos, retain=retain)
        if info.rc == 0:
            self.published += 1

    def health(self) -> dict:
        st = self._station
        if st is None:
            return {"station": self.station_name, "state": "starting"}
        s = st.stats
        alarm = st.alarm
        return {
            "station": self.station_name, "state": "running", "parts": s.parts_total, "frames": s.frames,
            "verdicts": s.verdicts_total, "rejected": len(s.fired) + s.folded["rejected"], "frames_dropped": s.frames_dropped,
            "missed_deadlines": s.late_decisions, "missed_fires": s.missed_fires,
            "actuator_failures": s.actuator_failures, "inference_failures": s.inference_failures,
            "alarm": sorted(alarm.active) if alarm is not None else [], "model_version": st.inspector.version,
            **({"line": s.line.health()} if s.line is not None else {}),  # the line link (issue #23)
        }

    def _health_loop(self) -> None:
        while not self._stop.wait(self.cfg.health_interval_s):
            self._publish(self.topic_health, self.health(), qos=1)

    # ---- hooks called by the station ----
    def attach(self, station: Any) -> None:
        self._station = station

    def verdict(self, v: Verdict, late: bool = False) -> None:
        if self._prom:
            self.parts.labels(v.outcome.value).inc()
            if v.is_ng:
                for reason in v.reasons or ["unspecified"]:
                    self.rejects.labels(reason).inc()
            if v.truth_ng is True and not v.is_ng:
                self.escapes.inc()
            elif v.truth_ng is False and v.is_ng:
                self.overkills.inc()
            if late:
                self.missed.inc()
        if self._mqtt is not None:
            self._publish(self.topic_verdict, {
                "station": self.station_name, "part_id": v.part_id, "verdict": v.outcome.value,
                "reasons": v.reasons, "failsafe": v.failsafe, "latency_ms": round(v.latency_ms, 2),
                "model_version": v.model_version, "detections": v.detections.to_records(),
            })

    def shadow_verdict(self, shadow: Verdict, live: Verdict) -> None:
        """A candidate's verdict in shadow mode beside the live one (it never actuates)."""
        comparison = "agree" if shadow.is_ng == live.is_ng else ("live_only_ng" if live.is_ng else "shadow_only_ng")
        if self._prom:
            self.shadow_parts.labels(comparison).inc()
        if self._mqtt is not None:
            self._publish(self.topic_shadow, {
                "station": self.station_name, "part_id": shadow.part_id, "verdict": shadow.outcome.value,
                "live_verdict": live.outcome.value, "comparison": comparison, "reasons": shadow.reasons,
                "model_version": shadow.model_version, "live_model_version": live.model_version,
            })

    def stage_times(self, t_capture: float, t_prepared: float, t_inferred: float, t_decided: float) -> None:
        if not self._prom:
            return
        if t_prepared and t_inferred:
            self.stage.labels("preprocess").observe(max(0.0, t_prepared - t_capture))
            self.stage.labels("inference").observe(max(0.0, t_inferred - t_prepared))
            self.stage.labels("decide").observe(max(0.0, t_decided - t_inferred))
        self.stage.labels("total").observe(max(0.0, t_decided - t_capture))

    def frame_dropped(self) -> None:
        if self._prom:
            self.dropped.inc()

    def fired(self, cmd: Any, fired: float | None, error: str | None) -> None:
        if self._prom:
            self.fires.labels("ok" if fired is not None else "failed").inc()

    def model_version(self, version: str) -> None:
        if self._prom:
            self.model.labels(self._version).set(0)
            self.model.labels(version).set(1)
            self._version = version

    def close(self) -> None:
        self._stop.set()
        if self._mqtt is not None:
            self._publish(self.topic_health, self.health(), qos=1)
            info = self._mqtt.publish(self.topic_status, "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(1.0)
            except (RuntimeError, ValueError):  # not connected: nothing to flush
                pass
            self._mqtt.loop_stop()
            self._mqtt.disconnect()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
