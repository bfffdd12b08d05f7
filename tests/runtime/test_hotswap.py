"""Model hot swap: a newly promoted bundle takes over without stopping the line; no part is lost
or judged twice; a broken bundle is refused and the line stays on the current model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from station_helpers import make_bundle, station_cfg
from defectgate.clock import MonotonicClock
from defectgate.errors import BundleError
from defectgate.hotswap import BundleWatcher, resolve_bundle_path
from defectgate.station import build_inspector, build_station


def _point(registry: Path, version: str) -> None:
    tmp = registry / "current.tmp"
    tmp.write_text(version + "\n")
    os.replace(tmp, registry / "current")  # atomic, as a promote step must write it


@pytest.fixture
def registry(tiny_onnx, tmp_path):
    reg = tmp_path / "registry"
    make_bundle(tiny_onnx, reg / "v0001", version="v0001")
    make_bundle(tiny_onnx, reg / "v0002", version="v0002")
    _point(reg, "v0001")
    return reg


def test_pointer_forms(registry, tmp_path):
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


def test_swap_mid_run_judges_every_part_once_and_in_order(registry, tmp_path):
    uri = "synthetic://conveyor?parts=24&seed=1&width=96&height=72"  # real time, 10 parts/s
    cfg = station_cfg(registry, tmp_path, uri, "conveyor.belt_speed_mm_s=1200", "model.watch_s=0.05")
    built = build_station(cfg)
    seen = []

    def on_verdict(v):
        seen.append(v)
        if len(seen) == 6:
            _point(registry, "v0002")  # `defectgate promote` happened while the line runs

    built.station.on_verdict = on_verdict
    stats = built.station.run()
    built.close()
    ids = [v.part_id for v in stats.verdicts]
    assert sorted(ids) == list(range(24)) and len(set(ids)) == 24, "no part lost, none judged twice"
    versions = [v.model_version for v in sorted(stats.verdicts, key=lambda v: v.part_id)]
    switch = versions.index("v0002")
    assert 6 <= switch < 24 and versions == ["v0001"] * switch + ["v0002"] * (24 - switch)
    assert stats.swaps == 1 and built.watcher.swaps == 1


def test_a_broken_bundle_is_refused_and_the_current_model_stays(registry, tiny_onnx, tmp_path):
    cfg = station_cfg(registry, tmp_path, "synthetic://conveyor?parts=1")
    clock = MonotonicClock()
    current = build_inspector(cfg, clock)
    swapped = []
    watcher = BundleWatcher(registry, 1.0, lambda b: build_inspector(cfg, clock, b), swapped.append,
                            current=current.bundle)
    assert watcher.poll() is False  # nothing changed
    bad = make_bundle(tiny_onnx, registry / "v0003", version="v0003")
    (bad / "model.onnx").write_bytes(b"truncated copy")  # sha256 no longer matches the sidecar
    _point(registry, "v0003")
    assert watcher.poll() is False and watcher.failures == 1 and "sha256" in watcher.last_error
    assert watcher.poll() is False and watcher.failures == 1, "a refused bundle is not retried in a loop"
    _point(registry, "v0002")
    assert watcher.poll() is True and swapped[0].version == "v0002"
