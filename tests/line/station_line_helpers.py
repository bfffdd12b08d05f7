"""Helpers for the station-level line tests: a station config on the tiny bundle with a `line:`
section, the archive's rows and line events, and a TCP proxy whose cable a test can pull."""

from __future__ import annotations

import socket
import sqlite3
import threading
from pathlib import Path

from station_helpers import station_cfg


def line_station_cfg(bundle: Path, run_dir: Path, uri: str, *overrides: str):
    return station_cfg(bundle, run_dir, uri, "alarm.kind=simulated", *overrides)


def archive_rows(run_dir: Path) -> tuple[list[sqlite3.Row], list[sqlite3.Row]]:
    """(parts rows, line_events rows) of the archive under `run_dir`, oldest first."""
    conn = sqlite3.connect(run_dir / "archive" / "parts.sqlite")
    conn.row_factory = sqlite3.Row
    try:
        parts = conn.execute("SELECT * FROM parts ORDER BY id").fetchall()
        events = conn.execute("SELECT * FROM line_events ORDER BY id").fetchall()
    finally:
        conn.close()
    return parts, events


def events_of(events, kind: str) -> list:
    return [e for e in events if e["kind"] == kind]


class CablePull:
    """A TCP forwarder on 127.0.0.1 between the station and a PLC: `pull()` cuts every connection
    and refuses new ones, as a pulled network cable would, while the PLC itself keeps running."""

    def __init__(self, target_port: int):
        self.target = ("127.0.0.1", target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self.pulled = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.pulled:
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._socks += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(4096):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def pull(self) -> None:
        self.pulled = True
        self._listener.close()
        with self._lock:
            for s in self._socks:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    close = pull
