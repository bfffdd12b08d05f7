"""Reconcile what the PLC did with what the station decided (`make demo-plc`): the simulated PLC's
summary (`defectgate plc-sim --json`, one decision per part: acquisition ID, rejected, for lack of
a result) against the station's archive (one row per part, the line events that say whether each
result reached the PLC).

    python -m defectgate.line.reconcile --plc plc.json --archive runs/demo-plc/station/archive

Per part, the PLC must have rejected it unless the station judged it OK *and* the PLC acked that
result; in numbers: PLC-ejected = the station's NG verdicts + its OK verdicts the PLC never got +
parts it never judged (or whose trigger it never took). Exit code 1 when anything does not reconcile."""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from pathlib import Path

from ..errors import ConfigError


def _read_station(archive: Path) -> tuple[str, dict[int, tuple[str, bool | None]], dict[int, str]]:
    """(latest run id, acquisition id -> (verdict, truth), acquisition id -> what became of its result)."""
    db = archive / "parts.sqlite"
    if not db.is_file():
        raise ConfigError(f"--archive {archive}: no parts.sqlite in it (the station's station.run_dir/archive)")
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT run_id FROM runs ORDER BY started_utc DESC, rowid DESC LIMIT 1").fetchone()
        if row is None:
            raise ConfigError(f"{db}: no station run in this archive")
        run = row[0]
        part_of, delivery = {}, {}
        for part, acq, kind, detail in conn.execute(
                "SELECT part_id, acquisition_id, kind, detail FROM line_events WHERE run_id = ? AND kind IN "
                "('delivered', 'undelivered') ORDER BY id", (run,)):
            part_of[acq] = part
            delivery[acq] = "delivered" if kind == "delivered" else f"undelivered ({detail})"
        acq_of = {p: a for a, p in part_of.items()}
        parts = {}
        rows = conn.execute("SELECT part_id, verdict, truth_ng FROM parts WHERE run_id = ?", (run,))
        for part, verdict, truth in rows:
            parts[acq_of.get(part, part)] = (verdict, None if truth is None else bool(truth))
    except sqlite3.OperationalError as exc:  # an archive of schema 1 has no line_events
        raise ConfigError(f"{db}: {exc} (an archive written by a station without the line link?)") from exc
    finally:
        conn.close()
    return run, parts, delivery


def reconcile(plc: dict, archive: Path) -> dict:
    run, parts, delivery = _read_station(archive)
    decisions = {int(a): (bool(r), bool(f)) for a, r, f in plc["decisions"]}
    mismatches, counts = [], dict.fromkeys(("ng", "ok_undelivered", "not_judged", "ok_ack_lost"), 0)
    caught = ng_truth = 0
    for acq, (rejected, failsafe) in sorted(decisions.items()):
        verdict, truth = parts.get(acq, (None, None))
        if acq not in parts:  # no row: the station never took this trigger, or its frame was never judged
            counts["not_judged"] += 1
            expected = True
        elif verdict == "NG":
            counts["ng"] += 1
            expected = True
        elif delivery.get(acq) == "delivered":
            expected = False
        elif rejected:  # an OK verdict whose result the PLC never got: rejected for lack of it
            counts["ok_undelivered"] += 1
            expected = True
        else:  # the PLC took the OK result and passed the part; only its ack never reached the station
            counts["ok_ack_lost"] += 1
            expected = False
        if expected != rejected or (verdict == "OK" and rejected and not failsafe):  # a reject code for an OK part
            mismatches.append({"acquisition_id": acq, "plc_rejected": rejected, "plc_for_lack_of_result": failsafe,
                               "station_verdict": verdict, "result": delivery.get(acq, "none")})
        if truth:
            ng_truth += 1
            caught += rejected
    ejected = sum(r for r, _ in decisions.values())
    expected_total = counts["ng"] + counts["ok_undelivered"] + counts["not_judged"]
    return {"run_id": run, "plc_parts": len(decisions), "plc_ejected": ejected,
            "plc_ejected_failsafe": sum(f for r, f in decisions.values() if r), "station_parts": len(parts),
            "station": counts, "expected_ejected": expected_total, "mismatches": mismatches,
            "station_parts_unknown_to_plc": sorted(set(parts) - set(decisions)),
            "ng_truth": ng_truth, "ng_caught": caught,
            "reconciled": not mismatches and ejected == expected_total and set(parts) <= set(decisions)}


def format_reconcile(r: dict) -> str:
    s = r["station"]
    lines = [
        "demo-plc: PLC-ejected parts against the station's verdicts",
        "-" * 62,
        f"PLC: parts {r['plc_parts']}, ejected {r['plc_ejected']} (for lack of a result {r['plc_ejected_failsafe']})",
        f"station: parts archived {r['station_parts']} (run {r['run_id']})",
        f"PLC ejected {r['plc_ejected']} = NG verdicts {s['ng']} + OK verdicts undelivered {s['ok_undelivered']} "
        f"+ parts the station never judged {s['not_judged']} = {r['expected_ejected']}"
        + (f" ({s['ok_ack_lost']} OK results reached the PLC, their acks did not)" if s["ok_ack_lost"] else ""),
        f"per part: {r['plc_parts'] - len(r['mismatches'])}/{r['plc_parts']} PLC decisions match the station's "
        f"results ({len(r['mismatches'])} mismatches)",
    ]
    if r["ng_truth"]:
        lines.append(f"truth: {r['ng_caught']}/{r['ng_truth']} NG parts ejected by the PLC")
    for m in r["mismatches"][:10]:
        lines.append(f"  mismatch: {m}")
    if r["station_parts_unknown_to_plc"]:
        lines.append(f"  station parts the PLC never decided: {r['station_parts_unknown_to_plc'][:10]}")
    lines.append("RECONCILED" if r["reconciled"] else "DOES NOT RECONCILE")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m defectgate.line.reconcile", description=__doc__.split("\n\n")[0])
    p.add_argument("--plc", required=True, help="defectgate plc-sim --json output")
    p.add_argument("--archive", required=True, help="the station's archive folder")
    p.add_argument("--json", dest="json_out", default=None)
    a = p.parse_args(argv)
    try:
        plc = json.loads(Path(a.plc).read_text())
        if "decisions" not in plc:
            raise ConfigError(f"--plc {a.plc}: no per-part decisions in it (written by defectgate plc-sim --json?)")
        result = reconcile(plc, Path(a.archive))
    except (OSError, json.JSONDecodeError) as exc:
        print(f"reconcile: error: --plc {a.plc}: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"reconcile: error: {exc}", file=sys.stderr)
        return 2
    print(format_reconcile(result))
    if a.json_out:
        Path(a.json_out).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["reconciled"] else 1


if __name__ == "__main__":
    sys.exit(main())
