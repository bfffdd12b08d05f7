"""`defectgate qa` as a real process: it serves the page on 127.0.0.1 and stops cleanly on SIGTERM."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from qa_fixtures import make_archive, make_bundle

pytest.importorskip("gradio", reason="the QA app needs the [qa] extra")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_serves_until_stopped(tmp_path):
    env = {"archive": make_archive(tmp_path / "archive", n=3), "bundle": make_bundle(tmp_path / "bundle"),
           "root": tmp_path}
    port = _free_port()
    dg = Path(sys.executable).with_name("defectgate")
    proc = subprocess.Popen([str(dg), "qa", "--archive", str(env["archive"]), "--bundle", str(env["bundle"]),
                             "--reviews", str(env["root"] / "reviews-cli.sqlite"), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        body = ""
        for _ in range(120):  # up to a minute for gradio to import on a busy 2-core machine
            if proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                    body = r.read().decode(errors="replace")
                    break
            except OSError:
                time.sleep(0.5)
        assert "defectgate QA" in body, proc.stdout.read() if proc.poll() is not None else "no page"
        # gradio's file route serves only its own cache: not the archive, the reviews, or /etc
        for path in (env["archive"] / "parts.sqlite", env["root"] / "reviews-cli.sqlite", Path("/etc/passwd"),
                     Path(__file__)):
            for url in (f"http://127.0.0.1:{port}/gradio_api/file={path}", f"http://127.0.0.1:{port}/file={path}"):
                try:
                    with urllib.request.urlopen(url, timeout=5) as r:
                        served = r.read()
                except urllib.error.HTTPError as exc:
                    assert exc.code in (403, 404), (url, exc.code)
                else:
                    assert path.read_bytes() not in served, f"{url} served {path}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert proc.returncode == 0 and "defectgate qa: stopped" in out, out[-2000:]
    assert (tmp_path / "reviews-cli.sqlite").is_file()  # the review store was opened by the process
