"""Model hot swap with the real registry: `defectgate promote` (registry.promote, what the CLI calls)
while a station with `model.watch_s` runs: the new model takes over between two parts, no part is
lost or judged twice, the archive names the model of every part; a broken version is refused and the
line stays on the current model; every swapped-out model's engine is released."""

from __future__ import annotations

import gc
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from station_helpers import make_bundle, station_cfg
from defectgate.backends import open_engines
from defectgate.bundle import load_bundle, read_sidecar, write_sidecar
from defectgate.clock import MonotonicClock
from defectgate.errors import BundleError
from defectgate.hotswap import BundleWatcher, resolve_bundle_path
from defectgate.station import build_inspector, build_station

reg = pytest.importorskip("defectgate_training.registry", reason="promote is part of the [train] extra")


def _wait(cond, timeout: float = 60.0, what: str = "") -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what or cond}")
        time.sleep(0.01)


@pytest.fixture(scope="module")
def gate_data(tmp_path_factory) -> Path:
    """A small gate set with the tiny model's classes, for promote's evaluation of each candidate."""
    from defectgate_training.data.synth import synthesize

    out = tmp_path_factory.mktemp("gate") / "data"
    synthesize(out, images=10, seed=2, hw=(72, 96), workers=1)
    return out / "data.yaml"


@pytest.fixture
def candidate(tiny_onnx, tmp_path) -> Path:
    """What `defectgate export` would hand to promote: a bundle folder without a registry version."""
    return make_bundle(tiny_onnx, tmp_path / "candidate", version="")


def _archive_rows(built) -> list[tuple[int, str]]:
    return sqlite3.connect(built.archive.db_path).execute(
        "SELECT part_id, model_version FROM parts ORDER BY id").fetchall()


def test_promote_twice_while_the_line_runs_swaps_between_parts(candidate, gate_data, tmp_path):
    registry = tmp_path / "registry"
    assert reg.promote(candidate, registry, gate_data).version == "v0001"
    parts = 60
    uri = f"synthetic://conveyor?parts={parts}&seed=1&width=96&height=72"  # real time, 10 parts/s
    built = build_station(station_cfg(registry, tmp_path / "run", uri, "conveyor.belt_speed_mm_s=1200",
                                      "model.watch_s=0.05"))
    station = built.station
    decisions = []

    def promote_twice() -> None:  # `defectgate promote` on the registry the station watches
        decisions.append(reg.promote(candidate, registry, gate_data))
        _wait(lambda: station.stats.swaps == 1, what="the first swap")
        decisions.append(reg.promote(candidate, registry, gate_data))

    promoter = threading.Thread(target=promote_twice, daemon=True)
    station.on_verdict = lambda v: promoter.start() if station.stats.verdicts_total == 6 else None
    stats = station.run()
    promoter.join(60)
    built.close()
    assert [(d.promoted, d.version) for d in decisions] == [(True, "v0002"), (True, "v0003")]
    rows = _archive_rows(built)
    assert sorted(r[0] for r in rows) == list(range(parts)), "no part lost, none judged twice"
    versions = [v for _, v in sorted(rows)]
    first, second = versions.index("v0002"), versions.index("v0003")
    assert 6 <= first < second < parts, f"both swaps happened while parts came: {versions}"
    assert versions == ["v0001"] * first + ["v0002"] * (second - first) + ["v0003"] * (parts - second)
    assert stats.swaps == 2 and built.watcher.swaps == 2
    assert reg.current_version(registry) == "v0003"


def test_a_broken_version_is_refused_its_engine_released_and_the_current_model_stays(candidate, gate_data,
                                                                                      tmp_path):
    registry = tmp_path / "registry"
    reg.promote(candidate, registry, gate_data)
    cfg = station_cfg(registry, tmp_path, "synthetic://conveyor?parts=1")
    clock = MonotonicClock()
    current = build_inspector(cfg, clock)
    swapped = []
    watcher = BundleWatcher(registry, 1.0, lambda b: build_inspector(cfg, clock, b), swapped.append,
                            current=current.bundle)
    assert watcher.poll() is False  # nothing changed
    # v0002: its model file damaged after promotion (sha256 no longer matches): refused before any engine
    assert reg.promote(candidate, registry, gate_data).version == "v0002"
    (registry / "versions" / "v0002" / "model.onnx").write_bytes(b"truncated copy")
    assert watcher.poll() is False and watcher.failures == 1 and "sha256" in watcher.last_error
    assert watcher.poll() is False and watcher.failures == 1, "a refused bundle is not retried in a loop"
    reg.rollback(registry, to="v0001")  # what an operator does; the gate compares the next candidate with it
    assert watcher.poll() is False, "back to the model the line runs: nothing to swap"
    # v0003: its sidecar names one class too few: the engine opens, the warm-up decode fails, and the
    # engine opened for it is closed again
    assert reg.promote(candidate, registry, gate_data).version == "v0003"
    v3 = registry / "versions" / "v0003"
    side = read_sidecar(v3 / "model.json")
    write_sidecar(v3, side.model_copy(update={"classes": side.classes[:-1], "class_thresholds": {}}))
    engines = open_engines()
    assert watcher.poll() is False and watcher.failures == 2 and "rows" in watcher.last_error
    assert open_engines() == engines, "the refused model's engine was released"
    reg.rollback(registry, to="v0001")
    assert reg.promote(candidate, registry, gate_data).version == "v0004"
    assert watcher.poll() is True and swapped[0].version == "v0004"
    for inspector in (current, *swapped):
        inspector.close()


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


RSS_TOLERANCE_MB = 40.0  # allocator slack; 50 leaked ONNX Runtime sessions of this model hold far more


def test_fifty_swaps_release_every_old_engine(tiny_bundle, tmp_path, capsys):
    """Each swap happens with frames of the old model in flight; once they are judged its engine is
    closed, so the process's open engine count (and its memory) stays where it was."""
    uri = "synthetic://conveyor?parts=1000000&seed=1&width=96&height=72&realtime=0"
    cfg = station_cfg(tiny_bundle, tmp_path, uri, "pipeline.overflow=block", "archive.enabled=false")
    clock = MonotonicClock()
    bundle = load_bundle(tiny_bundle)
    gc.collect()
    engines_before = open_engines()
    built = build_station(cfg, clock)
    station = built.station
    runner = threading.Thread(target=station.run, daemon=True)
    runner.start()
    _wait(lambda: station.stats.verdicts_total >= 30, what="the line to warm up")
    gc.collect()
    rss_start, engines_start = _rss_mb(), open_engines()
    for _ in range(50):
        new = build_inspector(cfg, clock, bundle)
        judged = station.stats.verdicts_total
        station.swap_inspector(new)
        # more verdicts than frames can be in flight (queue 4 + inference + outputs 2 + decide):
        # every frame of the model just swapped out has been judged
        _wait(lambda: station.stats.verdicts_total >= judged + 12, what="frames after a swap")
    gc.collect()
    rss_end, engines_end = _rss_mb(), open_engines()
    station.stop.set()
    runner.join(30)
    built.close()
    engines_closed = open_engines()
    with capsys.disabled():
        print(f"\n50 swaps: open engines {engines_before} before the station, {engines_start} running, "
              f"{engines_end} after the swaps, {engines_closed} after close; RSS {rss_start:.1f} MB -> "
              f"{rss_end:.1f} MB ({rss_end - rss_start:+.1f} MB, tolerance {RSS_TOLERANCE_MB} MB)")
    assert station.stats.swaps == 50 and not runner.is_alive()
    assert engines_start == engines_before + 1 and engines_end == engines_start
    assert engines_closed == engines_before
    assert rss_end - rss_start < RSS_TOLERANCE_MB


def test_verdicts_use_the_class_names_of_the_model_that_judged_them(tiny_onnx, tmp_path):
    """A swap to a model with other class names: every part's reasons and archived boxes carry the
    names of the model its frame was judged by, not those of the first or the current model."""
    a = make_bundle(tiny_onnx, tmp_path / "a", version="vA")
    b = make_bundle(tiny_onnx, tmp_path / "b", version="vB")
    side = read_sidecar(b / "model.json")
    renamed = ["gouge", "pit", "split", "smear"]
    write_sidecar(b, side.model_copy(update={"classes": renamed}))
    names = {"vA": set(read_sidecar(a / "model.json").classes), "vB": set(renamed)}
    uri = "synthetic://conveyor?parts=16&seed=3&width=96&height=72&realtime=0"
    cfg = station_cfg(a, tmp_path / "run", uri, "pipeline.overflow=block", "archive.ok_sample_rate=1")
    built = build_station(cfg)
    other = build_inspector(cfg, built.station.clock, load_bundle(b))
    station = built.station
    station.on_verdict = lambda v: station.swap_inspector(other) if station.stats.verdicts_total == 6 else None
    stats = station.run()
    built.close()
    assert {v.model_version for v in stats.verdicts} == {"vA", "vB"}
    for v in stats.verdicts:
        assert set(v.reasons) <= names[v.model_version] | {"deadline_missed"}
    assert {r for v in stats.verdicts if v.model_version == "vB" for r in v.reasons} & set(renamed), \
        "the renamed model found defects (random weights do)"
    import json

    rows = sqlite3.connect(built.archive.db_path).execute("SELECT model_version, detections FROM parts").fetchall()
    for version, dets in rows:
        assert {d["class"] for d in json.loads(dets)} <= names[version]


# ---- pointer forms other registries write (a folder, a text file, JSON): resolve_bundle_path reads all
def _point(registry: Path, version: str) -> None:
    tmp = registry / "current.tmp"
    tmp.write_text(version + "\n")
    os.replace(tmp, registry / "current")


def test_pointer_forms(tiny_onnx, tmp_path):
    registry = tmp_path / "registry"
    make_bundle(tiny_onnx, registry / "v0001", version="v0001")
    make_bundle(tiny_onnx, registry / "v0002", version="v0002")
    _point(registry, "v0001")
    assert resolve_bundle_path(registry) == registry / "v0001"
    (registry / "current").write_text('{"version": "v0002", "path": "v0002"}')
    assert resolve_bundle_path(registry) == registry / "v0002"
    (registry / "current").unlink()
    (registry / "current").symlink_to(registry / "v0001")
    assert resolve_bundle_path(registry) == (registry / "v0001").resolve()
    assert resolve_bundle_path(registry / "v0002") == registry / "v0002"  # a plain bundle folder
    (registry / "current").unlink()
    (registry / "current").write_text("")
    with pytest.raises(BundleError, match="pointer is empty"):
        resolve_bundle_path(registry)
