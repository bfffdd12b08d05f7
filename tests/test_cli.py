"""The one command line: help, unknown commands, clear one-line errors with exit code 2."""

import subprocess
import sys

from defectgate.cli import COMMANDS


def dg(*args, block=()):
    pre = "".join(f"sys.modules[{m!r}] = None; " for m in block)
    code = f"import sys; {pre}from defectgate.cli import main; sys.exit(main({list(args)!r}))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_help_lists_every_subcommand():
    out = dg("--help")
    assert out.returncode == 0
    for name in ["run", "replay", "bench", "data", "train", "evaluate", "export", "promote", "qa", "engine"]:
        assert f"  {name} " in out.stdout
        assert name in COMMANDS


def test_unknown_command_exits_2():
    out = dg("fly")
    assert out.returncode == 2 and "unknown command 'fly'" in out.stderr


def test_missing_config_is_one_line_without_traceback(tmp_path):
    out = dg("run", "--config", str(tmp_path / "nope.yaml"))
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert out.stderr.strip().count("\n") == 0 and "nope.yaml: config file not found" in out.stderr


def test_missing_bundle_is_one_line(tmp_path):
    cfg = tmp_path / "s.yaml"
    cfg.write_text("model:\n  bundle: " + str(tmp_path / "missing") + "\n")
    out = dg("run", "--config", str(cfg))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "missing: model bundle not found" in out.stderr and "defectgate export" in out.stderr


def test_offline_command_without_training_package_names_the_extra():
    out = dg("train", "--help", block=("defectgate_training", "ultralytics"))
    assert out.returncode == 2
    assert "pip install 'defectgate[train]'" in out.stderr and "Traceback" not in out.stderr
    out = dg("qa", block=("defectgate_training",))
    assert out.returncode == 2 and "defectgate[qa]" in out.stderr
