"""MQTT publishing of verdicts and health against a real mosquitto broker on 127.0.0.1."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time

import pytest

mqtt = pytest.importorskip("paho.mqtt.client", reason="needs the [station] extra")

from station_helpers import free_port, station_cfg  # noqa: E402
from defectgate.station import build_station  # noqa: E402

MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if shutil.os.path.exists("/usr/sbin/mosquitto") else None)


@pytest.fixture
def broker(tmp_path):
    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed (apt-get install -y mosquitto; .ci/run does it)")
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    end = time.monotonic() + 10
    while time.monotonic() < end:
        probe = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        try:
            probe.connect("127.0.0.1", port)
            probe.disconnect()
            break
        except OSError:
            time.sleep(0.1)
    yield port
    proc.terminate()
    proc.wait(10)


def test_verdicts_health_and_status_reach_a_subscriber(broker, tiny_bundle, tmp_path):
    got: dict[str, list] = {"verdict": [], "health": [], "status": []}
    subscribed = threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.on_message = lambda c, u, m: got[m.topic.rsplit("/", 1)[1]].append(m.payload.decode())
    sub.connect("127.0.0.1", broker)
    sub.subscribe("plant/mqtt-line/#", qos=1)
    sub.loop_start()
    assert subscribed.wait(5)

    uri = "synthetic://conveyor?parts=5&seed=2&width=96&height=72"
    built = build_station(station_cfg(tiny_bundle, tmp_path, uri, "station.name=mqtt-line",
                                      f"telemetry.mqtt_host=127.0.0.1", f"telemetry.mqtt_port={broker}",
                                      "telemetry.mqtt_topic=plant", "telemetry.health_interval_s=0.2"))
    time.sleep(0.5)  # connect_async: let the station's client connect before the first part
    stats = built.station.run()
    built.close()
    end = time.monotonic() + 5
    while time.monotonic() < end and (len(got["verdict"]) < 5 or "offline" not in got["status"]):
        time.sleep(0.05)
    sub.loop_stop()
    verdicts = [json.loads(p) for p in got["verdict"]]
    assert sorted(v["part_id"] for v in verdicts) == sorted(v.part_id for v in stats.verdicts)
    assert {v["verdict"] for v in verdicts} <= {"OK", "NG"} and all("latency_ms" in v for v in verdicts)
    assert got["health"] and json.loads(got["health"][-1])["parts"] == 5
    assert got["status"][0] == "online" and got["status"][-1] == "offline"


def test_a_dead_broker_never_blocks_the_line(tiny_bundle, tmp_path):
    uri = "synthetic://conveyor?parts=4&seed=2&width=96&height=72&realtime=0"
    built = build_station(station_cfg(tiny_bundle, tmp_path, uri, "telemetry.mqtt_host=127.0.0.1",
                                      f"telemetry.mqtt_port={free_port()}", "pipeline.overflow=block"))
    stats = built.station.run()
    built.close()
    assert len(stats.verdicts) == 4 and built.telemetry.published == 0
