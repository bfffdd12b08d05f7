"""`defectgate run` with a `line:` section, as a user starts it: a config whose blocks overlap and an
OPC UA port already taken are refused at start (exit 2, one line naming the keys); a working line
prints its rows in the line report."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
import yaml



def _run(tmp_path, bundle, line: dict, *extra: str, **sections):
    cfg = {"station": {"run_dir": str(tmp_path / "station")}, "source": {"uri": "synthetic://conveyor?parts=3&"
                                                                          "width=96&height=72&realtime=0"},
           "model": {"bundle": str(bundle), "backend": "onnxruntime", "threads": 1},
           "pipeline": {"overflow": "block"}, "line": line, **sections}
    path = tmp_path / "station.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return subprocess.run([sys.executable, "-m", "defectgate.cli", "run", "--config", str(path), *extra],
                          capture_output=True, text=True, timeout=180), path


def test_overlapping_blocks_are_refused_at_start_naming_both_keys_and_the_file(tmp_path, tiny_bundle):
    line = {"mode": "plc_tracks", "result_block": {"transport": "modbus", "modbus": {"port": 5020, "base": 30}}}
    out, path = _run(tmp_path, tiny_bundle, line, source={"uri": "synthetic://conveyor?parts=2", "encoder": {
        "kind": "modbus", "port": 5020, "holding_register": 40}})
    assert out.returncode == 2, out.stderr
    assert f"{path}: line.result_block.modbus (holding registers 30..61) overlaps source.encoder (holding " \
           "registers 40..41) on 127.0.0.1:5020 unit 1" in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_an_opc_ua_port_already_taken_is_refused_at_start(tmp_path, tiny_bundle):
    pytest.importorskip("asyncua", reason="needs the [line] extra")
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        out, _ = _run(tmp_path, tiny_bundle, {"opcua": {"enabled": True, "host": "127.0.0.1", "port": port}})
    assert out.returncode == 2
    assert f"line.opcua.port: 127.0.0.1:{port} is already in use" in out.stderr.strip().splitlines()[-1]
    assert "Traceback" not in out.stderr


@pytest.mark.slow
def test_a_station_with_the_timing_process_prints_the_line_rows(tmp_path, tiny_bundle):
    out, _ = _run(tmp_path, tiny_bundle, {"timing": {"process": True}}, "--set", "conveyor.camera_to_ejector_mm=200")
    assert out.returncode == 0, out.stderr[-2000:]
    rows = {line.rsplit("  ", 1)[0].strip(): line.rsplit("  ", 1)[1].strip() for line in out.stdout.splitlines()
            if "  " in line}
    assert rows["line mode"] == "station_fires (trigger camera)" and rows["reject timing"] == "process"
    assert rows["timing restarts / pulses unguaranteed"] == "0 / 0"
    assert rows["rejects confirmed / unconfirmed"] == "0 / 0"
