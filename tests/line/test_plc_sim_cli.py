"""`defectgate plc-sim` as a user runs it: a real server another process can read, and with no
station at all every part is rejected (fail-safe) unless told otherwise."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

pytest.importorskip("pymodbus", reason="needs the [station] extra")

from line_helpers import free_port, wait_for  # noqa: E402

pytestmark = pytest.mark.slow


def _sim(tmp_path, *args: str):
    port = free_port()
    out = tmp_path / "plc.json"
    cmd = [sys.executable, "-m", "defectgate.cli", "plc-sim", "--port", str(port), "--belt-speed", "1000",
           "--pitch", "100", "--camera-to-ejector", "200", "--duration", "2", "--json", str(out), *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True), port, out


def test_without_a_station_every_part_is_ejected_failsafe_and_the_encoder_counts(tmp_path):
    from pymodbus.client import ModbusTcpClient

    proc, port, out = _sim(tmp_path)
    client = ModbusTcpClient("127.0.0.1", port=port, timeout=1)
    try:
        assert wait_for(lambda: client.connect(), 10.0)
        first = client.read_holding_registers(40, count=2, device_id=1).registers
        time.sleep(0.2)
        second = client.read_holding_registers(40, count=2, device_id=1).registers
        assert second[0] + (second[1] << 16) > first[0] + (first[1] << 16), "the encoder moves"
        beat = client.read_holding_registers(20, count=1, device_id=1).registers[0]
        assert beat > 0, "the PLC heartbeat counts scans"
    finally:
        client.close()
        text, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, text
    summary = json.loads(out.read_text())
    assert summary["parts"] >= 10, summary
    assert summary["ejected"] == summary["ejected_failsafe"] == summary["parts"], "no result: every part rejected"
    assert summary["passed"] == 0 and '"ejected"' in text


def test_pass_without_result_is_an_explicit_choice(tmp_path):
    proc, _, out = _sim(tmp_path, "--pass-without-result")
    text, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, text
    summary = json.loads(out.read_text())
    assert summary["parts"] >= 10 and summary["ejected"] == 0 and summary["passed"] == summary["parts"]


def test_a_taken_port_exits_2_with_one_line(tmp_path):
    from defectgate.line.modbus_server import RegisterServer

    blocker = RegisterServer("127.0.0.1", free_port(), what="blocker")
    try:
        out = subprocess.run([sys.executable, "-m", "defectgate.cli", "plc-sim", "--port", str(blocker.port),
                              "--duration", "1"], capture_output=True, text=True, timeout=60)
    finally:
        blocker.close()
    assert out.returncode == 2
    assert f"defectgate plc-sim: error: plc-sim: 127.0.0.1:{blocker.port} is already in use" in out.stderr


def test_parts_without_a_photo_eye_of_its_own_is_refused():
    out = subprocess.run([sys.executable, "-m", "defectgate.cli", "plc-sim", "--parts", "5", "--pitch", "0"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--parts 5" in out.stderr and "needs --pitch > 0" in out.stderr
