"""The line link's counters on Prometheus /metrics and in the MQTT health message, from a real
station run (station_fires, confirm sensor on simulated pins that never see a part)."""

from __future__ import annotations

import urllib.request

import pytest

from station_line_helpers import line_station_cfg

from defectgate.station import build_station


@pytest.mark.slow
def test_line_counters_are_scraped_from_the_running_stations_stats(tiny_bundle, tmp_path):
    pytest.importorskip("prometheus_client", reason="needs the [station] extra")
    cfg = line_station_cfg(tiny_bundle, tmp_path, "synthetic://conveyor?parts=4&width=96&height=72&realtime=0",
                           "telemetry.prometheus_port=0", "pipeline.overflow=block",
                           "conveyor.camera_to_ejector_mm=100",
                           "line.inputs.kind=simulated", "line.inputs.map={reject_confirm: 0}",
                           "line.confirm.enabled=true", "line.confirm.window_max_ms=50")
    built = build_station(cfg)
    stats = built.station.run()
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{built.telemetry.port}/metrics", timeout=5).read().decode()
        health = built.telemetry.health()
    finally:
        built.close()
    fired = len(stats.fired)
    assert fired >= 1 and stats.line.rejects_unconfirmed == fired, "no sensor edge: every reject unconfirmed"
    assert f"defectgate_line_rejects_unconfirmed_total {float(fired)}" in text
    assert "defectgate_line_results_delivered_total 0.0" in text and "defectgate_line_link_up" not in text
    assert health["line"]["rejects_unconfirmed"] == fired and health["line"]["link_up"] is None
