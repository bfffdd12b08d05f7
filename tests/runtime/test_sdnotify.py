"""sd_notify over a real unix datagram socket, as systemd would receive it."""

import socket

from defectgate.sdnotify import SystemdNotifier


def test_ready_watchdog_and_stopping_reach_the_socket(tmp_path, monkeypatch):
    path = str(tmp_path / "notify.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "10000000")
    n = SystemdNotifier()
    assert n.enabled and n.watchdog_interval_s == 5.0
    assert n.ready("inspecting")
    assert server.recv(256) == b"READY=1\nSTATUS=inspecting"
    assert n.watchdog()
    assert server.recv(256) == b"WATCHDOG=1"
    assert n.stopping()
    assert server.recv(256) == b"STOPPING=1"
    server.close()


def test_outside_systemd_every_call_is_a_no_op(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    n = SystemdNotifier()
    assert not n.enabled and n.watchdog_interval_s is None
    assert n.ready() is False and n.watchdog() is False


def test_vanished_socket_does_not_raise(tmp_path):
    assert SystemdNotifier(str(tmp_path / "gone.sock")).ready() is False


def test_station_under_systemd_notifies_ready_pings_watchdog_and_stops(tiny_bundle, tmp_path):
    """`defectgate run` as systemd runs it (Type=notify, WatchdogSec): READY=1 when the line starts,
    WATCHDOG=1 while it is healthy, STOPPING=1 at the end. Received on a real socket."""
    import os
    import subprocess
    import sys

    import yaml

    path = str(tmp_path / "notify.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(30)
    cfg = {"model": {"bundle": str(tiny_bundle), "backend": "onnxruntime", "threads": 1},
           "station": {"run_dir": str(tmp_path / "run")},
           "source": {"uri": "synthetic://conveyor?parts=12&seed=2&width=128&height=96"},
           "conveyor": {"belt_speed_mm_s": 600}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"}  # ping every 0.1 s
    proc = subprocess.Popen([sys.executable, "-m", "defectgate.cli", "run", "--config", str(tmp_path / "s.yaml")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    messages = []
    while not messages or messages[-1] != b"STOPPING=1":
        messages.append(server.recv(256))
    out, err = proc.communicate(timeout=60)
    server.close()
    assert proc.returncode == 0, err[-2000:]
    assert messages[0].startswith(b"READY=1\nSTATUS=inspecting synthetic://")
    assert b"WATCHDOG=1" in messages[1:-1]  # the line ran ~2.4 s, healthy: pinged
