"""Safe model change on a live line, end to end: the station runs with a candidate in shadow; the diff
accrues in the archive; a QA reviewer settles the disagreements through the QA service while the line
runs; `promote --evidence shadow` refuses too little evidence with the number needed, then promotes on
enough, and the station hot-swaps the candidate live. No part is lost or judged twice, and the line
report, the archive and the registry agree."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from station_helpers import station_cfg
from defectgate.bundle import load_bundle
from defectgate.report import line_report
from defectgate.station import build_station
from test_shadow import DECISION, _with_thresholds

pytestmark = pytest.mark.slow
training = pytest.importorskip("defectgate_training", reason="the registry and QA app are the [train]/[qa] side")


def _review_disagreements(archive, truth_of) -> int:
    """What a QA reviewer does in the Disagreements queue: decide each part by what it really is."""
    from defectgate_training.qa.archive_reader import Filters
    from defectgate_training.qa.decisions import Decision
    from defectgate_training.qa.service import QAConfig, QAService

    svc = QAService(QAConfig(archive=archive))
    rows, _ = svc.queue(Filters(queue="disagreements", verdict="all"), "unreviewed")
    for r in rows:
        ng = truth_of(r)
        decision = {(True, True): Decision.CONFIRM_DEFECT, (True, False): Decision.FALSE_REJECT,
                    (False, True): Decision.MISSED_DEFECT, (False, False): Decision.CORRECT_PASS}[(r.verdict == "NG", ng)]
        boxes = [{"xmin": 5, "ymin": 5, "xmax": 30, "ymax": 30, "label": svc.classes[0]}] if ng else []
        svc.decide(r.id, decision, boxes, "qa-anna")
    svc.store.close()
    return len(rows)


def test_shadow_review_promote_on_evidence_and_live_swap(tiny_bundle, tmp_path, capsys):
    from defectgate.cli import main
    from defectgate_training import registry
    from defectgate_training.data.synth import synthesize

    reg = tmp_path / "registry"
    gate = tmp_path / "gate"
    synthesize(gate, images=16, seed=4, hw=(72, 96))
    live = _with_thresholds(tiny_bundle, tmp_path / "live", "x", 0.95, 0.95)
    cand = _with_thresholds(tiny_bundle, tmp_path / "cand", "x", 0.6, 0.3)
    assert main(["promote", str(live), "--registry", str(reg), "--data", str(gate / "data.yaml")]) == 0  # v0001
    assert main(["promote", str(cand), "--registry", str(reg), "--stage"]) == 0  # v0002, in shadow
    uri = "synthetic://conveyor?parts=60&seed=1&width=96&height=72"  # real time: 5 parts/s
    cfg = station_cfg(reg, tmp_path / "run", uri, DECISION, "model.watch_s=0.05",
                      f"shadow.bundle={reg / 'candidate'}", "shadow.watch_s=0.05")
    built = build_station(cfg)
    archive = built.archive.root
    truth: dict[int, bool] = {}
    outcome: dict[str, object] = {}

    def rollout():  # the QA reviewer and the plant manager, while the line runs
        try:
            deadline = time.monotonic() + 20
            reviewed = 0
            while time.monotonic() < deadline and reviewed < 4:
                time.sleep(0.3)
                reviewed += _review_disagreements(archive, lambda r: truth[r.part_id])
            args = ["promote", "--registry", str(reg), "--evidence", "shadow", "--archive", str(archive)]
            outcome["thin"] = main([*args, "--escape-limit", "0.05"])
            outcome["thin_out"] = capsys.readouterr().out
            outcome["promoted"] = main([*args, "--escape-limit", "0.9"])
            outcome["reviewed"] = reviewed
        except Exception as exc:  # surfaced by the assertions below
            outcome["error"] = repr(exc)

    worker = threading.Thread(target=rollout)

    def on_verdict(v):
        truth[v.part_id] = bool(v.truth_ng)
        if len(truth) == 12:
            worker.start()

    built.station.on_verdict = on_verdict
    stats = built.station.run()
    report = line_report(stats)
    built.close()
    worker.join(30)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["reviewed"] >= 4
    assert outcome["thin"] == 1 and "too few NG parts" in outcome["thin_out"] and "59 needed" in outcome["thin_out"]
    assert outcome["promoted"] == 0
    assert registry.current_version(reg) == "v0002" and registry.candidate_version(reg) is None

    with sqlite3.connect(archive / "parts.sqlite") as conn:
        parts = conn.execute("SELECT part_id, model_version, verdict FROM parts ORDER BY part_id").fetchall()
        shadow = conn.execute("SELECT part_id, model_version, verdict, live_verdict FROM shadow").fetchall()
        fires = {r[0] for r in conn.execute("SELECT part_id FROM fires WHERE fired IS NOT NULL")}
    # every part judged exactly once, first by v0001, then (after the live swap) by v0002
    assert [p for p, _, _ in parts] == list(range(60))
    versions = [v for _, v, _ in parts]
    assert versions == sorted(versions) and versions[0] == "v0001" and versions[-1] == "v0002"
    assert stats.swaps == 1
    # the shadow judged with the candidate only, and only while it was a candidate
    assert shadow and {v for _, v, _, _ in shadow} == {"v0002"}
    live_of = {p: (v, verdict) for p, v, verdict in parts}
    compared = [(p, verdict, live) for p, _, verdict, live in shadow if live_of[p][0] == "v0001"]
    assert len(compared) == report["shadow"]["parts"] - sum(live_of[p][0] == "v0002" for p, *_ in shadow)
    assert sum(v == "NG" and lv == "OK" for _, v, lv in compared) > 0
    # the report and the archive agree
    assert report["parts"] == len(parts) and report["rejected"] == len(fires)
    assert report["verdict_ng"] == sum(v == "NG" for *_, v in parts)
    bound = load_bundle(reg / "current").sidecar.metrics["escape_bound"]
    assert bound["evidence"] == ["reviewed_shadow"] and bound["ng_parts"] >= 1
    events = [e["event"] for e in registry.history(reg)]
    assert events == ["promoted", "staged", "refused", "promoted"]
