"""One verdict per physical part: the free-run synthetic conveyor at several belt speeds, and the
free-run part assigner (parts.TrackedParts)."""

from __future__ import annotations

import numpy as np
import pytest

from station_helpers import station_cfg
from defectgate.clock import MonotonicClock
from defectgate.sources.synthetic import FreeRunConveyor
from defectgate.station import build_station
from defectgate.tracking import PartLocator, Tracker, split_by_part
from defectgate.types import Detections


def _track_run(speed: float, parts: int = 8, fps: float = 20):
    src = FreeRunConveyor(f"synthetic://conveyor?mode=freerun&parts={parts}&realtime=0&fps={fps}&width=160&height=120"
                          "&seed=5", MonotonicClock(), speed, 120, 160)
    locator, tracker = PartLocator(), Tracker(160, 160)
    closed, frames_per_part = [], {}
    while (f := src.read(1.0)) is not None:
        for p in f.truth["parts"]:
            frames_per_part[p["part"]] = frames_per_part.get(p["part"], 0) + 1
        closed += tracker.update(locator(f.image), f.seq, f.t_capture, f.encoder_mm, f.truth["parts"]).closed
    closed += tracker.close_all(1 << 30)
    return closed, frames_per_part


@pytest.mark.parametrize("speed", [250, 600, 1500, 2600])
def test_each_part_becomes_exactly_one_track(speed):
    closed, frames_per_part = _track_run(speed)
    assert sorted(t.truth_part for t in closed) == list(range(8)), "one track per part, none split or merged"
    if speed <= 600:
        assert min(len(t.seqs) for t in closed) >= 4, "slow belt: each part seen in several frames"
    else:
        assert max(len(t.seqs) for t in closed) <= 3


def test_empty_belt_has_no_parts():
    belt = np.clip(np.random.default_rng(0).normal(42, 6, (120, 160, 3)), 0, 255).astype(np.uint8)
    assert len(PartLocator()(belt)) == 0


def test_neighbouring_parts_stay_apart_and_close_after_leaving():
    tracker = Tracker(width_px=160, fov_mm=160, match_tol_mm=30)
    # two whole parts in view, 120 mm pitch, 60 mm long
    up = tracker.update(np.array([[10, 10, 70, 60], [130, 10, 158.5, 60]], np.float32), 0, 0.0, 0.0)
    assert len(up.new) == 2
    # 20 mm later: same two parts, moved by 20 px (1 px per mm)
    up = tracker.update(np.array([[30, 10, 90, 60], [150, 10, 160, 60]], np.float32), 1, 0.05, 20.0)
    assert not up.new and [a[0] for a in up.assigned] == [0, 1]
    # the second part has left; after max_misses frames its track closes
    up = tracker.update(np.array([[50, 10, 110, 60]], np.float32), 2, 0.1, 40.0)
    up2 = tracker.update(np.array([[70, 10, 130, 60]], np.float32), 3, 0.15, 60.0)
    assert [t.id for t in up.closed + up2.closed] == [1]


def test_detections_go_to_the_part_that_contains_them():
    dets = Detections(np.array([[12, 12, 20, 20], [140, 20, 150, 30], [100, 100, 104, 104]], np.float32),
                      np.array([0.9, 0.8, 0.7], np.float32), np.array([0, 1, 2]))
    per_part, unassigned = split_by_part(dets, [(4, np.array([10, 10, 70, 60])), (5, np.array([130, 10, 160, 60]))])
    assert len(per_part[4]) == 1 and len(per_part[5]) == 1 and unassigned == 1


@pytest.mark.parametrize("speed", [400, 1500])
def test_free_run_station_judges_and_fires_once_per_part(tiny_bundle, tmp_path, speed):
    uri = "synthetic://conveyor?mode=freerun&parts=6&seed=4&width=160&height=120&fps=20"  # real time
    cfg = station_cfg(tiny_bundle, tmp_path, uri, f"conveyor.belt_speed_mm_s={speed}", "pipeline.overflow=block",
                      "decision.thresholds={scratch: 0.0}")  # random weights + 0 threshold: all NG
    built = build_station(cfg)
    stats = built.station.run()
    built.close()
    ids = [v.part_id for v in stats.verdicts]
    assert len(ids) == len(set(ids)) == 6, "exactly one verdict per physical part"
    assert set(stats.captured) == set(ids)
    assert all(v.is_ng and not v.failsafe for v in stats.verdicts)
    assert set(stats.fired) == set(ids), "every NG part fired once"
    truth_parts = {v.truth_ng for v in stats.verdicts}
    assert truth_parts <= {True, False}, "each track knows its true part"


def test_a_tracked_part_is_named_by_the_model_that_judged_its_frames(tiny_onnx, tmp_path):
    """Free-run: every frame that shows a part is judged by model B, the empty-belt frames in between
    (which close the tracks of parts that left) and the end of the run by model A, as after a swap.
    Each part carries B's class names and version: the model that judged it, not the one current
    when its track closed."""
    from station_helpers import make_bundle
    from defectgate.bundle import load_bundle, read_sidecar, write_sidecar
    from defectgate.inspector import Judgement, make_verdict
    from defectgate.parts import TrackedParts
    from defectgate.scheduler import RejectScheduler
    from defectgate.station import build_inspector

    a, b = make_bundle(tiny_onnx, tmp_path / "a", version="vA"), make_bundle(tiny_onnx, tmp_path / "b", version="vB")
    side = read_sidecar(b / "model.json")
    write_sidecar(b, side.model_copy(update={"classes": ["gouge", "pit", "split", "smear"]}))
    clock = MonotonicClock()
    cfg = station_cfg(a, tmp_path, "synthetic://conveyor?parts=1")
    model_a, model_b = build_inspector(cfg, clock, load_bundle(a)), build_inspector(cfg, clock, load_bundle(b))
    src = FreeRunConveyor("synthetic://conveyor?mode=freerun&parts=3&realtime=0&fps=20&width=160&height=120&seed=5",
                          clock, 600, 120, 160)
    parts = TrackedParts(Tracker(160, 160), PartLocator(), RejectScheduler(600, 400, 0.03))
    parts.start(clock.now())
    done, closed_by_a = [], 0
    while (frame := src.read(1.0)) is not None:
        assignment = parts.assign(frame)
        if not assignment.shown:  # an empty belt: model A judges it
            finished = parts.judged(frame, assignment, Judgement(model_a, [], Detections.empty(), []))
            closed_by_a += len(finished)
            done += finished
            continue
        boxes = np.array([box for _, box in assignment.shown], np.float32)
        centre = (boxes[:, :2] + boxes[:, 2:]) / 2  # one 'class 1' defect on every part in view
        dets = Detections(np.hstack([centre - 2, centre + 2]), np.full(len(boxes), 0.9), np.ones(len(boxes), int))
        done += parts.judged(frame, assignment, Judgement(model_b, model_b.reasons(dets), dets, []))
    done += parts.finish(model_a)
    assert closed_by_a > 0, "some tracks closed on a frame model A judged"
    model_a.close(), model_b.close()
    verdicts = [make_verdict(d.part, d.judgement, clock.now()) for d in done]
    assert sorted(v.part_id for v in verdicts) == [0, 1, 2]
    assert all(v.reasons == ["pit"] and v.model_version == "vB" for v in verdicts)
    assert all(v.class_names == ("gouge", "pit", "split", "smear") for v in verdicts)
