"""`defectgate replay --models A B`: every recorded frame judged by both models, the part-level diff
(JSON byte-identical run to run, HTML, drawn disagreements), unreadable frames reported, and an
archive whose disagreements the QA app and `promote --evidence replay` read."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from defectgate.cli import main
from defectgate.synthparts import render_scene
from test_shadow import DECISION, _with_thresholds  # noqa: F401  (the same two models)


@pytest.fixture
def recording(tmp_path):
    """A recorded shift: 16 part images with YOLO labels beside them (truth), and one damaged file."""
    shift = tmp_path / "shift"
    shift.mkdir()
    for i in range(16):
        scene = render_scene(40 + i, (72, 96), ng_rate=0.5)
        cv2.imwrite(str(shift / f"part_{i:03d}.png"), scene.image)
        (shift / f"part_{i:03d}.txt").write_text("0 0.5 0.5 0.2 0.2\n" if scene.ng else "")
    (shift / "part_007b.png").write_bytes(b"\x89PNG not really")  # a frame the camera PC wrote half
    return shift


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "station.yaml"
    path.write_text(yaml.safe_dump({"model": {"backend": "onnxruntime", "threads": 1},
                                    "decision": {"ignore_classes": ["dent", "stain"]},
                                    "conveyor": {"belt_speed_mm_s": 600, "camera_to_ejector_mm": 400}}))
    return path


def test_replay_two_models_writes_a_stable_diff_the_archive_agrees_with(tiny_bundle, tmp_path, recording, config,
                                                                         capsys):
    a = _with_thresholds(tiny_bundle, tmp_path / "A", "v0001", 0.95, 0.95)
    b = _with_thresholds(tiny_bundle, tmp_path / "B", "v0002", 0.6, 0.3)
    args = ["replay", "--config", str(config), "--models", str(a), str(b), "--source", str(recording)]
    assert main([*args, "--out", str(tmp_path / "d1")]) == 0
    assert "replay diff: A = v0001, B = v0002, 16 parts" in capsys.readouterr().out
    assert main([*args, "--out", str(tmp_path / "d2")]) == 0
    first, second = (tmp_path / "d1" / "diff.json").read_bytes(), (tmp_path / "d2" / "diff.json").read_bytes()
    assert first == second, "the same recording and models give the same bytes"
    d = json.loads(first)
    assert d["parts"] == 16 and sum(d["counts"].values()) == 16
    assert d["unreadable"] == {"count": 1, "frames": [{"name": "part_007b.png", "why": "unreadable or corrupt image"}]}
    assert d["counts"]["b_only_ng"] > 0 and d["unjudged"]["count"] == 0
    # the diff is the archive's: A's verdicts are the parts, B's the shadow rows
    archive = tmp_path / "d1" / "archive" / "parts.sqlite"
    with sqlite3.connect(archive) as conn:
        pairs = conn.execute("SELECT p.verdict, s.verdict FROM parts p JOIN shadow s USING (run_id, part_id)").fetchall()
    cells = {"both_ng": ("NG", "NG"), "both_ok": ("OK", "OK"), "a_only_ng": ("NG", "OK"), "b_only_ng": ("OK", "NG")}
    assert {c: pairs.count(v) for c, v in cells.items()} == d["counts"]
    assert all(sum(v.values()) == 16 for v in d["per_class"].values()), "each class: every part in one cell"
    assert sum(v["b_only_ng"] for v in d["per_class"].values()) >= d["counts"]["b_only_ng"]
    # truth from the label files: each model's escapes and overkills
    ng = sum(bool((recording / f"part_{i:03d}.txt").read_text()) for i in range(16))
    assert d["truth"]["a"]["ng_parts"] == d["truth"]["b"]["ng_parts"] == ng
    # every disagreement is listed with its file name and drawn with both models' boxes
    dis = d["disagreements"]
    assert len(dis) == d["counts"]["a_only_ng"] + d["counts"]["b_only_ng"]
    for x in dis:
        assert x["name"].startswith("part_") and x["image"]
        img = cv2.imread(str(tmp_path / "d1" / x["image"]))
        assert img is not None and img.shape[:2] == (72, 96)
    html = (tmp_path / "d1" / "report.html").read_text()
    assert "part_007b.png" in html and html.count("<figure>") == len(dis)


def test_replay_models_refuses_what_it_cannot_use(tiny_bundle, tmp_path, config, capsys):
    a = _with_thresholds(tiny_bundle, tmp_path / "A", "v0001", 0.95, 0.95)
    assert main(["replay", "--config", str(config), "--models", str(a), str(tmp_path / "nope"), "--source",
                 str(tmp_path), "--out", str(tmp_path / "d")]) == 2
    assert "not a bundle folder" in capsys.readouterr().err
    assert main(["replay", "--config", str(config), "--models", str(a), str(a), "--source", "rtsp://cam/1",
                 "--out", str(tmp_path / "d")]) == 2
    assert "replay reads file:// URIs or paths" in capsys.readouterr().err
