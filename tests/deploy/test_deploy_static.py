"""Static checks of deploy/jetson: shellcheck on the scripts, systemd-analyze verify on the unit, and
the facts the unit, script, udev rule and container file must agree on. No Jetson needed."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
JETSON = ROOT / "deploy" / "jetson"
UNIT = JETSON / "defectgate.service"
SETUP = JETSON / "setup.sh"


def _unit_keys(text: str) -> dict[str, str]:
    keys = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            k, v = line.split("=", 1)
            keys[k.strip()] = v.strip()
    return keys


@pytest.mark.parametrize("script", sorted(JETSON.glob("*.sh")), ids=lambda p: p.name)
def test_shell_scripts_pass_shellcheck(script):
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (.ci/run installs it with apt)")
    result = subprocess.run(["shellcheck", "--severity=style", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _verify(unit_text: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """systemd-analyze verify on a copy whose ExecStart points at an executable that exists here:
    verify refuses a missing binary, and /opt/defectgate/venv exists only on an installed Jetson.
    Everything else in the unit is checked as written."""
    true = shutil.which("true") or "/bin/true"
    text = re.sub(r"^ExecStart=\S+", f"ExecStart={true}", unit_text, flags=re.M)
    copy = tmp_path / UNIT.name
    copy.write_text(text)
    return subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True)


def _unit_complaints(result: subprocess.CompletedProcess) -> list[str]:
    # verify exits 0 on unknown keys and bad values, only printing them: any line about our file counts
    return [line for line in (result.stdout + result.stderr).splitlines() if UNIT.name in line]


@pytest.fixture
def systemd_analyze():
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (.ci/run installs systemd with apt)")


def test_unit_passes_systemd_analyze_verify(systemd_analyze, tmp_path):
    result = _verify(UNIT.read_text(), tmp_path)
    assert result.returncode == 0, result.stderr
    assert _unit_complaints(result) == []


def test_verify_would_catch_a_broken_unit(systemd_analyze, tmp_path):
    """The check above is only worth something if verify reports mistakes the way we read them."""
    broken = UNIT.read_text().replace("WatchdogSec=", "WatchdogSecs=").replace("Type=notify", "Type=notfy")
    complaints = _unit_complaints(_verify(broken, tmp_path))
    assert any("WatchdogSecs" in c for c in complaints)
    assert any("notfy" in c for c in complaints)


def test_unit_restarts_on_failure_and_is_watched():
    keys = _unit_keys(UNIT.read_text())
    assert keys["Type"] == "notify" and keys["NotifyAccess"] in ("main", "all")
    assert keys["Restart"] == "on-failure"
    assert 1 <= int(keys["WatchdogSec"]) <= 60
    assert keys["KillSignal"] == "SIGTERM"  # the station's clean shutdown path
    assert "gpio" in keys["SupplementaryGroups"].split()


def test_unit_script_and_container_agree_on_paths_and_user():
    keys = _unit_keys(UNIT.read_text())
    setup = SETUP.read_text()
    prefix = re.search(r"^PREFIX=(\S+)", setup, re.M).group(1)
    user = re.search(r"^SERVICE_USER=(\S+)", setup, re.M).group(1)
    assert keys["ExecStart"].startswith(f"{prefix}/venv/bin/defectgate run --config /etc/defectgate/")
    assert keys["User"] == user and keys["Group"] == user
    assert "--system-site-packages" in setup  # the venv must see JetPack's TensorRT
    assert "[jetson" in setup and "99-defectgate-gpio.rules" in setup
    container = (JETSON / "Containerfile").read_text()
    assert re.search(r"^FROM nvcr\.io/nvidia/l4t-jetpack:\$\{L4T_TAG\}", container, re.M)
    assert re.search(r"^ARG L4T_TAG=r36\.", container, re.M)
    assert "--system-site-packages" in container and ".[jetson" in container


def test_udev_rule_gives_group_gpio_the_gpio_devices():
    lines = [ln for ln in (JETSON / "99-defectgate-gpio.rules").read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines
    assert all('SUBSYSTEM=="gpio"' in ln for ln in lines)
    assert any('KERNEL=="gpiochip*"' in ln and 'GROUP="gpio"' in ln and 'MODE="0660"' in ln for ln in lines)
    if shutil.which("udevadm"):
        result = subprocess.run(["udevadm", "verify", str(JETSON / "99-defectgate-gpio.rules")], capture_output=True, text=True)
        if result.returncode != 0 and "Unknown command verb verify" in result.stderr:
            return  # `udevadm verify` arrived in systemd 254; older udevadm cannot check rules offline
        assert result.returncode == 0, result.stderr


def test_setup_script_help_and_bad_option_exit_before_touching_anything():
    # --help and an unknown option return before the root and board checks: safe to run anywhere
    ok = subprocess.run(["bash", str(SETUP), "--help"], capture_output=True, text=True)
    assert ok.returncode == 0 and "JetPack 6" in ok.stdout and "set -euo" not in ok.stdout
    bad = subprocess.run(["bash", str(SETUP), "--frobnicate"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown option '--frobnicate'" in bad.stderr
