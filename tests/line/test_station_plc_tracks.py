"""The station in `plc_tracks` mode against the simulated PLC on a real Modbus TCP server: the PLC's
triggers drive the station, its shift register rejects, and each fault of issue #23 at the station
level (PLC unreachable at start, PLC lost mid-run, acks that never come, a FIFO that fills). Every
part has exactly one archive row whatever the link did; every result the PLC did not take is
counted as not judged, and the PLC rejects that part."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("pymodbus", reason="needs the [station] extra")

from line_helpers import free_port, wait_for  # noqa: E402
from station_line_helpers import CablePull, archive_rows, events_of, line_station_cfg  # noqa: E402

from defectgate.line.modbus_server import RegisterServer  # noqa: E402
from defectgate.line.plc_sim import PlcSimulator  # noqa: E402
from defectgate.line.reconcile import reconcile  # noqa: E402
from defectgate.report import format_report, line_report  # noqa: E402
from defectgate.station import build_station  # noqa: E402

pytestmark = pytest.mark.slow  # each test runs the station on the tiny model for a second or two

URI = "synthetic://conveyor?parts=1000&seed=3&width=96&height=72&realtime=0"
CRACK_ONLY = "decision.ignore_classes=[scratch, dent, stain]"  # the tiny model sees cracks on most parts, not all


def _plc_cfg(bundle, run_dir, port, parts, *extra):
    return line_station_cfg(bundle, run_dir, URI, "conveyor.belt_speed_mm_s=1000", "conveyor.camera_to_ejector_mm=300",
                            f"pipeline.max_parts={parts}", "line.mode=plc_tracks", "line.result_block.transport=modbus",
                            f"line.result_block.modbus.port={port}", "line.result_block.cycle_ms=5",
                            "line.result_block.ack_timeout_ms=250", "line.result_block.reconnect_ms=100", *extra)


def _run(cfg):
    built = build_station(cfg)
    stats = built.station.run()
    report = line_report(stats, built.station.inspector.backend.name, built.station.inspector.version, built.alarm)
    built.close()
    return built, stats, report


def test_the_plcs_triggers_drive_the_station_and_its_rejects_reconcile_part_by_part(tiny_bundle, tmp_path):
    parts = 12
    sim = PlcSimulator(port=free_port(), belt_speed_mm_s=1000, camera_to_ejector_mm=300, pitch_mm=100,
                       parts=parts, wait_for_station=True).start()
    try:
        built, stats, report = _run(_plc_cfg(tiny_bundle, tmp_path, sim.port, parts, "line.trigger=plc", CRACK_ONLY))
        assert wait_for(lambda: sim.finished, 5.0)
        summary = sim.summary()
    finally:
        sim.close()
    assert built.station.actuator is None, "plc_tracks: the station opens no ejector of its own"
    rows, events = archive_rows(tmp_path)
    acqs = [d[0] for d in summary["decisions"]]
    assert sorted(r["part_id"] for r in rows) == sorted(acqs) and len(rows) == parts, \
        "one archive row per part, named by the PLC's acquisition ID"
    assert sorted(e["part_id"] for e in events_of(events, "delivered")) == sorted(acqs)
    ng = {r["part_id"] for r in rows if r["verdict"] == "NG"}
    ejected = {a for a, rejected, _ in summary["decisions"] if rejected}
    assert ejected == ng and 0 < len(ng) < parts, "the PLC ejected exactly the station's NG parts"
    assert report["rejected"] == len(ng) and stats.fired.keys() == ng, "the report's rejects are the PLC's"
    assert summary["ejected_failsafe"] == 0 and summary["results_orphaned"] == 0
    line = report["line"]
    assert line["results_delivered"] == parts and line["results_undelivered"] == {} and line["not_judged_by_plc"] == 0
    assert line["reconcile"]["reconciled"] and line["reconcile"]["plc_ejected"] == len(ng)
    assert "PLC ejected vs station" in format_report(report) and "reconciled" in format_report(report)
    assert reconcile(summary, tmp_path / "archive")["reconciled"]
    ok_part = next(a for a in acqs if a not in ng)  # a PLC that rejected a part the station passed: caught
    tampered = {**summary, "decisions": [[a, a == ok_part or r, f] for a, r, f in summary["decisions"]]}
    r = reconcile(tampered, tmp_path / "archive")
    assert not r["reconciled"] and [m["acquisition_id"] for m in r["mismatches"]] == [ok_part]


def test_plc_unreachable_from_the_start_every_part_is_archived_and_counted_not_judged(tiny_bundle, tmp_path):
    parts = 6
    built, stats, report = _run(_plc_cfg(tiny_bundle, tmp_path, free_port(), parts, "pipeline.overflow=block"))
    rows, events = archive_rows(tmp_path)
    assert len(rows) == parts == len({r["part_id"] for r in rows}), "every part has one row, PLC or not"
    undelivered = events_of(events, "undelivered")
    assert sorted(e["part_id"] for e in undelivered) == sorted(r["part_id"] for r in rows)
    assert {e["detail"] for e in undelivered} == {"ack_timeout"}
    assert report["line"]["results_undelivered"] == {"ack_timeout": parts}
    assert report["line"]["not_judged_by_plc"] == parts and report["line"]["results_delivered"] == 0
    assert report["rejected"] == parts, "none of them reached the PLC: it rejects them all"
    assert {"plc_link_lost", "result_ack_timeout"} <= set(built.alarm.raised)


def test_plc_lost_mid_run_the_plc_rejects_what_the_station_could_not_deliver(tiny_bundle, tmp_path):
    parts = 30
    sim = PlcSimulator(port=free_port(), belt_speed_mm_s=1000, camera_to_ejector_mm=300, pitch_mm=100,
                       parts=parts, wait_for_station=True).start()
    cable = CablePull(sim.port)
    import threading

    cut = threading.Thread(target=lambda: wait_for(lambda: sim.triggered >= 10, 10.0) and cable.pull(), daemon=True)
    cut.start()
    try:
        cfg = _plc_cfg(tiny_bundle, tmp_path, cable.port, parts, "line.trigger=plc", CRACK_ONLY)
        built = build_station(cfg)
        runner = threading.Thread(target=built.station.run, daemon=True)
        runner.start()
        assert wait_for(lambda: sim.finished, 15.0), "the PLC runs its parts to the end without the station"
        built.station.stop.set()  # the PLC's triggers stopped reaching the station: end the run
        runner.join(10.0)
        report = line_report(built.station.stats, "", "", built.alarm)
        built.close()
        summary = sim.summary()
    finally:
        cable.close()
        sim.close()
    rows, events = archive_rows(tmp_path)
    decided = {a: (r, f) for a, r, f in summary["decisions"]}
    seen = {r["part_id"] for r in rows}
    assert len(rows) == len(seen) and 0 < len(seen) < parts, "the station judged the parts it got triggers for"
    assert all(decided[a] == (True, True) for a in set(decided) - seen), "never seen: rejected for lack of a result"
    assert "plc_link_lost" in built.alarm.raised
    r = reconcile(summary, tmp_path / "archive")
    assert r["reconciled"], json.dumps(r, indent=1)
    assert r["station"]["not_judged"] == parts - len(seen)


def test_acks_that_never_come_and_a_fifo_that_fills_are_counted_per_part(tiny_bundle, tmp_path):
    dumb = RegisterServer("127.0.0.1", free_port(), what="a PLC without the program")
    parts = 6
    try:
        built, stats, report = _run(_plc_cfg(tiny_bundle, tmp_path, dumb.port, parts, "pipeline.overflow=block",
                                             "line.result_block.fifo_size=2", "line.result_block.ack_timeout_ms=1500"))
    finally:
        dumb.close()
    rows, events = archive_rows(tmp_path)
    assert len(rows) == parts
    why = {e["part_id"]: e["detail"] for e in events_of(events, "undelivered")}
    assert sorted(why) == sorted(r["part_id"] for r in rows), "each part's result ends undelivered, once"
    assert sorted(why.values()) == ["ack_timeout"] * 2 + ["fifo_full"] * (parts - 2)
    assert report["line"]["results_undelivered"] == {"ack_timeout": 2, "fifo_full": parts - 2}
    assert {"result_fifo_full", "result_ack_timeout"} <= set(built.alarm.raised)
