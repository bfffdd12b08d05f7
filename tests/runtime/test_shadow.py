"""Shadow mode: a candidate judges the same parts as the live model in its own thread and never
actuates; what it says goes to the archive's shadow table and the report; a slow, crashing or wrong
candidate never touches the line."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from station_helpers import CLASSES, make_bundle, station_cfg
from defectgate.bundle import load_bundle
from defectgate.clock import MonotonicClock
from defectgate.report import format_report, line_report
from defectgate.sources import open_source
from defectgate.station import build_inspector, build_station

# the tiny random model's scratch and crack scores spread over 0..1 (dent and stain saturate: ignored)
DECISION = "decision.ignore_classes=[dent, stain]"
URI = "synthetic://conveyor?parts=30&seed=1&width=96&height=72&realtime=0"


def _with_thresholds(src: Path, dst: Path, version: str, scratch: float, crack: float, **side) -> Path:
    shutil.copytree(src, dst)
    sc = json.loads((dst / "model.json").read_text())
    sc.update(version=version, class_thresholds={"scratch": scratch, "crack": crack, "dent": 0.5, "stain": 0.5}, **side)
    (dst / "model.json").write_text(json.dumps(sc))
    return dst


@pytest.fixture
def models(tiny_bundle, tmp_path):
    live = _with_thresholds(tiny_bundle, tmp_path / "live", "v0001", 0.95, 0.95)
    cand = _with_thresholds(tiny_bundle, tmp_path / "cand", "v0002", 0.6, 0.3)  # rejects more
    return live, cand


def _rows(archive: Path, sql: str):
    with sqlite3.connect(archive / "parts.sqlite") as conn:
        return conn.execute(sql).fetchall()


def test_shadow_verdicts_are_the_candidates_own_and_the_line_is_unchanged(models, tmp_path):
    live, cand = models
    base = (DECISION, "pipeline.overflow=block")
    plain = build_station(station_cfg(live, tmp_path / "plain", URI, *base))
    plain_stats = plain.station.run()
    plain.close()
    cfg = station_cfg(live, tmp_path / "shadow", URI, *base, f"shadow.bundle={cand}", "shadow.lossless=true")
    built = build_station(cfg)
    stats = built.station.run()
    built.close()
    # the live line is exactly what it is without a shadow: same verdicts, same rejects
    assert [(v.part_id, v.outcome) for v in stats.verdicts] == [(v.part_id, v.outcome) for v in plain_stats.verdicts]
    assert stats.fired.keys() == plain_stats.fired.keys()
    # every part judged once by each model; the candidate's verdicts are what it says on its own
    archive = built.archive.root
    shadow = dict(_rows(archive, "SELECT part_id, verdict FROM shadow WHERE model_version = 'v0002'"))
    assert sorted(shadow) == list(range(30)) and len(_rows(archive, "SELECT id FROM shadow")) == 30
    alone = build_inspector(cfg, MonotonicClock(), load_bundle(cand), shadow=True)
    source = open_source(cfg.source, cfg.conveyor, MonotonicClock())
    while (frame := source.read(0.2)) is not None:
        assert shadow[frame.seq] == alone.step(frame).outcome.value, f"part {frame.seq}"
    alone.close()
    # the counts the report gives are the archive's
    live_v = dict(_rows(archive, "SELECT part_id, verdict FROM parts"))
    only_cand = sum(shadow[p] == "NG" and live_v[p] == "OK" for p in shadow)
    only_live = sum(shadow[p] == "OK" and live_v[p] == "NG" for p in shadow)
    sh = stats.shadow
    assert only_cand > 0, "the candidate's lower thresholds must make it reject parts the live model passes"
    assert (sh["shadow_only_ng"], sh["live_only_ng"], sh["parts"]) == (only_cand, only_live, 30)
    assert sh["agree"] == 30 - only_cand - only_live and sh["versions"] == {"v0002": 30}
    text = format_report(line_report(stats))
    assert "shadow agreement" in text and f"{sh['agree']}/30 parts" in text
    # a disagreement the live model passed keeps its image through the shadow row
    kept = _rows(archive, "SELECT s.image_path FROM shadow s JOIN parts p USING (run_id, part_id) "
                          "WHERE s.verdict = 'NG' AND p.verdict = 'OK'")
    assert kept and all(r[0] and (archive / r[0]).is_file() for r in kept)


def test_a_slow_candidate_skips_frames_and_counts_them(tiny_bundle, tmp_path):
    live = _with_thresholds(tiny_bundle, tmp_path / "live", "v0001", 0.95, 0.95)
    side = json.loads((tiny_bundle / "model.json").read_text())
    side["output"]["strides"] = [8, 16, 32]
    slow = _with_thresholds(tiny_bundle, tmp_path / "slow", "v0002", 0.6, 0.3, output=side["output"],
                            tta={"flips": "hvflip", "scales": [1.0, 0.83, 0.67]})  # 12 inferences a frame
    cfg = station_cfg(live, tmp_path / "run", URI.replace("parts=30", "parts=60"), DECISION,
                      "pipeline.overflow=block", f"shadow.bundle={slow}", "shadow.queue_frames=1")
    built = build_station(cfg)
    stats = built.station.run()
    built.close()
    sh = stats.shadow
    assert len(stats.verdicts) == 60 and stats.late_decisions == 0
    assert sh["frames_skipped"] > 0 and sh["parts_unjudged"] == sh["frames_skipped"]
    assert sh["parts"] + sh["parts_unjudged"] == 60
    assert len(_rows(built.archive.root, "SELECT id FROM shadow")) == sh["parts"]


def test_a_candidate_with_other_classes_is_refused_by_name_and_the_line_goes_on(models, tmp_path):
    live, cand = models
    other = tmp_path / "other"
    shutil.copytree(cand, other)
    sc = json.loads((other / "model.json").read_text())
    sc["classes"] = list(reversed(CLASSES))
    (other / "model.json").write_text(json.dumps(sc))
    cfg = station_cfg(live, tmp_path / "run", URI, DECISION, "pipeline.overflow=block", f"shadow.bundle={other}",
                      "shadow.alarm_on_failure=true")
    built = build_station(cfg)
    stats = built.station.run()
    built.close()
    assert len(stats.verdicts) == 30 and stats.inference_failures == 0
    assert stats.shadow["refused"] == 1 and stats.shadow["parts"] == 0 and stats.shadow["parts_unjudged"] == 30
    assert "judges classes ['stain', 'crack', 'dent', 'scratch']" in stats.shadow["last_error"]
    assert built.alarm.raised.get("shadow_refused") == 1
    assert _rows(built.archive.root, "SELECT COUNT(*) FROM shadow") == [(0,)]


def test_a_candidate_that_crashes_mid_run_leaves_the_line_alone(models, tmp_path):
    live, cand = models
    cfg = station_cfg(live, tmp_path / "run", URI, DECISION, "pipeline.overflow=block", f"shadow.bundle={cand}",
                      "shadow.lossless=true")
    built = build_station(cfg)
    real_build = built.station.shadow.build

    def flaky(bundle):  # fault injection: the candidate's engine fails from its 5th frame on
        model = real_build(bundle)
        calls = {"n": 0}
        infer = model.infer

        def failing(batch):
            calls["n"] += 1
            if calls["n"] > 5:  # (the warm-up runs the detector itself, not this)
                raise RuntimeError("engine lost its device")
            return infer(batch)
        model.infer = failing
        return model

    built.station.shadow.build = flaky
    stats = built.station.run()
    built.close()
    sh = stats.shadow
    assert len(stats.verdicts) == 30 and not any(v.failsafe for v in stats.verdicts)
    assert sh["parts"] == 5 and sh["failures"] == 25 and sh["parts_unjudged"] == 25
    assert "engine lost its device" in sh["last_error"]
    assert not built.alarm.raised, "no alarm unless shadow.alarm_on_failure"


def test_the_candidate_pointer_is_followed_mid_shift_and_a_removed_one_leaves_the_shadow_idle(models, tmp_path):
    pytest.importorskip("defectgate_training", reason="stages candidates with the registry ([train] extra)")
    from defectgate_training import registry, rollout

    live, cand = models
    reg = tmp_path / "registry"
    registry.open_registry(reg, create=True)
    assert rollout.stage(cand, reg) == "v0001"
    newer = _with_thresholds(cand, tmp_path / "newer", "x", 0.3, 0.1)
    uri = "synthetic://conveyor?parts=30&seed=1&width=96&height=72"  # real time: 5 parts/s at 600 mm/s
    cfg = station_cfg(live, tmp_path / "run", uri, DECISION, f"shadow.bundle={reg / 'candidate'}",
                      "shadow.watch_s=0.05")
    built = build_station(cfg)
    seen = []

    def on_verdict(v):
        seen.append(v.part_id)
        if len(seen) == 8:
            rollout.stage(newer, reg)  # a new candidate staged mid-shift: v0002
        if len(seen) == 20:
            (reg / "candidate").unlink()  # promoted elsewhere: no candidate any more

    built.station.on_verdict = on_verdict
    stats = built.station.run()
    built.close()
    rows = _rows(built.archive.root, "SELECT part_id, model_version FROM shadow ORDER BY part_id")
    versions = [v for _, v in rows]
    assert versions == sorted(versions) and set(versions) == {"v0001", "v0002"}, "v0001, then v0002, never mixed back"
    first_new = next(p for p, v in rows if v == "v0002")
    assert 8 <= first_new <= 12 and rows[-1][0] < 24, "switched between parts, idle after the pointer went"
    assert stats.shadow["loads"] == 2 and stats.shadow["parts"] + stats.shadow["parts_unjudged"] == 30
    assert len(stats.verdicts) == 30


def test_free_run_the_candidate_judges_each_tracked_part_once(models, tmp_path):
    live, cand = models
    uri = "synthetic://conveyor?mode=freerun&fps=30&parts=12&seed=2&width=160&height=96&realtime=0"
    cfg = station_cfg(live, tmp_path / "run", uri, DECISION, "pipeline.overflow=block", "source.trigger=free_run",
                      f"shadow.bundle={cand}", "shadow.lossless=true")
    built = build_station(cfg)
    stats = built.station.run()
    built.close()
    live_parts = sorted(v.part_id for v in stats.verdicts)
    shadow_parts = [p for (p,) in _rows(built.archive.root, "SELECT part_id FROM shadow ORDER BY part_id")]
    judged = [v.part_id for v in stats.verdicts if not v.failsafe]
    assert shadow_parts == sorted(judged) and len(set(shadow_parts)) == len(shadow_parts)
    assert stats.shadow["parts"] == len(judged) and len(live_parts) >= 10
