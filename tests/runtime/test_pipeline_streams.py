"""Several inference threads in the station (an engine with `concurrency` > 1: OpenVINO streams):
each part is judged once, and decide sees the frames in the order they were captured even when a
later frame finishes its inference first."""

from __future__ import annotations

import threading
import time

import pytest

from defectgate.config import load_config
from defectgate.errors import ConfigError
from defectgate.pipeline import _Handoff, _InOrder
from defectgate.station import build_station

from station_helpers import station_cfg


def test_items_come_out_in_the_order_they_were_taken():
    source: _Handoff[str] = _Handoff(8)
    sink: _Handoff[str] = _Handoff(8)
    for name in "abcd":
        source.put(name)
    taken = [source.get_numbered() for _ in range(4)]
    assert [n for n, _ in taken] == [0, 1, 2, 3]
    in_order: _InOrder[str] = _InOrder(sink, producers=2)
    for number, item in (taken[2], taken[0], taken[3], taken[1]):  # finished out of order
        in_order.put(number, item)
    in_order.producer_done()
    in_order.producer_done()  # the last producer closes the sink
    assert [sink.get() for _ in range(5)] == ["a", "b", "c", "d", None]


def test_a_producer_far_ahead_waits_for_the_one_behind():
    sink: _Handoff[int] = _Handoff(100)
    in_order: _InOrder[int] = _InOrder(sink, producers=2, limit=2)
    in_order.put(1, 1)
    in_order.put(2, 2)
    done = threading.Event()
    ahead = threading.Thread(target=lambda: (in_order.put(3, 3), done.set()))
    ahead.start()
    assert not done.wait(0.3)  # two items already wait for number 0
    in_order.put(0, 0)
    assert done.wait(5)
    ahead.join()
    assert [sink.get() for _ in range(4)] == [0, 1, 2, 3]


def test_the_station_runs_one_inference_thread_per_stream_and_judges_in_capture_order(tiny_bundle, tmp_path):
    pytest.importorskip("openvino")
    uri = "synthetic://conveyor?parts=10&seed=4&width=96&height=72&realtime=0"
    built = build_station(station_cfg(tiny_bundle, tmp_path / "run", uri, "pipeline.overflow=block",
                                      "model.backend=openvino", "model.streams=2", "model.threads=2"))
    station = built.station
    backend = station.inspector.backend
    assert backend.concurrency == 2 and backend.name.endswith(":2streams")
    real, seen, lock = backend.infer, [], threading.Lock()

    def infer(batch):
        with lock:
            k = len(seen)
            seen.append(threading.current_thread().name)
        if k == 0:
            time.sleep(0.3)  # the first frame finishes long after the second
        return real(batch)

    backend.infer = infer
    order = []
    station.on_verdict = lambda v: order.append(v.frame_seq)
    stats = station.run()
    built.close()
    assert stats.inference_failures == 0 and len(stats.verdicts) == 10
    assert order == sorted(order)  # decide saw them in capture order
    assert {"inference-0", "inference-1"} <= set(seen)


def test_streams_is_a_checked_config_key():
    assert load_config(None, ["model.streams=2"]).model.streams == 2
    with pytest.raises(ConfigError, match="model.streams"):
        load_config(None, ["model.streams=0"])
