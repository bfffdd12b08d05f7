"""Prometheus /metrics served by a running station."""

from __future__ import annotations

import urllib.request

import pytest

pytest.importorskip("prometheus_client", reason="needs the [station] extra")

from station_helpers import station_cfg  # noqa: E402
from defectgate.station import build_station  # noqa: E402


def _metric(text: str, name: str, labels: str = "") -> float:
    for line in text.splitlines():
        if line.startswith(name + labels + " ") or (not labels and line.startswith(name + " ")):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name}{labels} not in /metrics")


def test_metrics_count_parts_rejects_fires_and_stages(tiny_bundle, tmp_path):
    uri = "synthetic://conveyor?parts=6&seed=2&width=96&height=72&realtime=0"
    built = build_station(station_cfg(tiny_bundle, tmp_path, uri, "telemetry.prometheus_port=0",
                                      "decision.thresholds={scratch: 0.0}", "pipeline.overflow=block"))
    stats = built.station.run()
    port = built.telemetry.port
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    built.close()
    assert _metric(text, "defectgate_parts_total", '{verdict="NG"}') == 6
    assert _metric(text, "defectgate_fires_total", '{result="ok"}') == len(stats.fired) == 6
    assert _metric(text, "defectgate_stage_seconds_count", '{stage="inference"}') == 6
    assert _metric(text, "defectgate_model_info", '{version="v0001"}') == 1
    assert _metric(text, "defectgate_alarm") == 0
    assert 'defectgate_rejects_total{reason="scratch"}' in text
    truth_ok_ng = sum(1 for v in stats.verdicts if v.truth_ng is False)
    assert _metric(text, "defectgate_overkills_total") == truth_ok_ng, "OK parts rejected count as overkills"


def test_prometheus_missing_names_the_extra(monkeypatch, tiny_bundle, tmp_path):
    import sys

    from defectgate.errors import MissingExtraError

    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(MissingExtraError, match=r"defectgate\[station\]"):
        build_station(station_cfg(tiny_bundle, tmp_path, "synthetic://conveyor?parts=1",
                                  "telemetry.prometheus_port=0"))
