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
