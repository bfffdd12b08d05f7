"""What the line link did during a run, for the line report, telemetry and the tests: results
delivered to the PLC or not (by reason), rejects confirmed or not, trigger overruns, timing-process
restarts and the pulses they left unguaranteed, and the PLC's own counters over the run.

In `plc_tracks` the PLC rejects every part that has no result it could use, so the station can
say how many parts the PLC must have ejected: its NG verdicts, the OK verdicts it could not
deliver, and the parts it captured but never judged. `reconcile` sets that against the PLC's own
`ejected` counter (words 22, 23 of the block)."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Iterable

from .events import EventKind, LineEvent

# Prometheus counters (defectgate_line_<name>_total) and MQTT health keys: attribute -> help text
COUNTERS = {
    "results_delivered": "results the PLC acked",
    "results_undelivered": "results the PLC never acked (it rejects those parts)",
    "rejects_confirmed": "fired rejects the confirm sensor saw",
    "rejects_unconfirmed": "fired rejects the confirm sensor did not see in its window",
    "trigger_overruns": "PLC triggers the station could not take",
    "timing_restarts": "times the reject-timing process died and was restarted",
    "pulses_unguaranteed": "reject pulses due while the timing process was dead (reported missed)",
    "plc_ejected": "parts the PLC ejected during the run (its own counter)",
}


@dataclass
class LineStats:
    mode: str = "station_fires"
    timing: str = "thread"  # station_fires: "thread" (in the station) or "process" (line.timing.process)
    trigger: str = "camera"
    results_delivered: int = 0
    undelivered: dict[str, int] = field(default_factory=dict)  # reason -> results
    undelivered_ok: int = 0  # of those, OK verdicts: parts the station passed but the PLC rejects
    rejects_confirmed: int = 0
    rejects_unconfirmed: int = 0
    unconfirmed_parts: collections.deque = field(default_factory=lambda: collections.deque(maxlen=1000))
    trigger_overruns: int = 0
    triggers_lost: int = 0  # PLC triggers whose ID no captured part got (line.trigger plc: never acquired)
    line_stops: int = 0
    plc_stale: int = 0
    timing_restarts: int = 0
    pulses_unguaranteed: int = 0
    plc: dict[str, int] = field(default_factory=dict)  # the PLC's counters over the run (ejected, ...)
    link_up: bool | None = None

    @property
    def results_undelivered(self) -> int:
        return sum(self.undelivered.values())

    @property
    def plc_ejected(self) -> int:
        return self.plc.get("ejected", 0)

    def take(self, events: Iterable[LineEvent], was_ok: dict[int, bool]) -> None:
        """Count the link's events; `was_ok` says which undelivered parts the station had passed."""
        for ev in events:
            if ev.kind is EventKind.delivered:
                self.results_delivered += 1
            elif ev.kind is EventKind.undelivered:
                self.undelivered[ev.detail] = self.undelivered.get(ev.detail, 0) + 1
                self.undelivered_ok += bool(was_ok.get(ev.part_id))  # type: ignore[arg-type]
            elif ev.kind is EventKind.reject_confirmed:
                self.rejects_confirmed += 1
            elif ev.kind is EventKind.reject_unconfirmed:
                self.rejects_unconfirmed += 1
                self.unconfirmed_parts.append(ev.part_id)
            elif ev.kind is EventKind.trigger_overrun:
                self.trigger_overruns += 1
            elif ev.kind is EventKind.line_stop:
                self.line_stops += 1
            elif ev.kind is EventKind.plc_stale:
                self.plc_stale += 1

    def reconcile(self, verdict_ng: int, unjudged: int) -> dict:
        """plc_tracks: the parts the PLC must have ejected by the station's books, against its count
        (with line.trigger plc a lost trigger ID is a part the station never took: the PLC rejects it)."""
        lost = self.triggers_lost if self.trigger == "plc" else 0
        expected = verdict_ng + self.undelivered_ok + unjudged + lost
        return {"plc_ejected": self.plc.get("ejected"), "plc_ejected_failsafe": self.plc.get("ejected_failsafe"),
                "ng_verdicts": verdict_ng, "undelivered_ok": self.undelivered_ok, "unjudged": unjudged,
                "triggers_lost": lost, "expected": expected, "reconciled": self.plc.get("ejected") == expected}

    def report(self, verdict_ng: int, unjudged: int) -> dict:
        out = {"mode": self.mode, "trigger": self.trigger, "results_delivered": self.results_delivered,
               "results_undelivered": dict(self.undelivered), "rejects_confirmed": self.rejects_confirmed,
               "rejects_unconfirmed": self.rejects_unconfirmed, "unconfirmed_parts": list(self.unconfirmed_parts),
               "trigger_overruns": self.trigger_overruns, "triggers_lost": self.triggers_lost,
               "line_stops": self.line_stops, "plc_stale": self.plc_stale,
               "plc": dict(self.plc)}
        if self.mode == "plc_tracks":
            # every undelivered result's part is one the PLC rejects as not judged
            out["not_judged_by_plc"] = self.results_undelivered + unjudged
            out["reconcile"] = self.reconcile(verdict_ng, unjudged)
        else:
            out.update(timing=self.timing, timing_restarts=self.timing_restarts,
                       pulses_unguaranteed=self.pulses_unguaranteed)
        return out

    def health(self) -> dict:
        return {name: getattr(self, name) for name in COUNTERS} | {"link_up": self.link_up}


def format_line(r: dict) -> list[tuple[str, object]]:
    """The line report's rows for a run with a `line:` section (report.format_report)."""
    undelivered = r["results_undelivered"]
    rows: list[tuple[str, object]] = [("line mode", f"{r['mode']} (trigger {r['trigger']})")]
    if r["mode"] == "plc_tracks":
        why = ", ".join(f"{k} {v}" for k, v in sorted(undelivered.items())) or "none"
        rows += [("results delivered", r["results_delivered"]),
                 ("results undelivered", f"{sum(undelivered.values())} ({why})"),
                 ("not judged (PLC rejects)", r["not_judged_by_plc"])]
        rec = r["reconcile"]
        if rec["plc_ejected"] is not None:
            verdict = "reconciled" if rec["reconciled"] else "DOES NOT RECONCILE"
            lost = f" + {rec['triggers_lost']} triggers lost" if rec["triggers_lost"] else ""
            rows += [("PLC ejected (for lack of a result)", f"{rec['plc_ejected']} ({rec['plc_ejected_failsafe']})"),
                     ("PLC ejected vs station", f"{rec['plc_ejected']} vs {rec['ng_verdicts']} NG + "
                      f"{rec['undelivered_ok']} undelivered OK + {rec['unjudged']} unjudged{lost} = "
                      f"{rec['expected']}: {verdict}")]
    else:
        rows += [("reject timing", r["timing"])]
        if r["timing"] == "process":
            rows += [("timing restarts / pulses unguaranteed", f"{r['timing_restarts']} / {r['pulses_unguaranteed']}")]
    if r["mode"] == "plc_tracks" and "confirmed" in r["plc"]:  # the PLC confirms its own rejects (words 24, 25)
        rows += [("PLC rejects confirmed / unconfirmed", f"{r['plc']['confirmed']} / {r['plc']['unconfirmed']}")]
    if r["mode"] != "plc_tracks" or r["rejects_confirmed"] or r["rejects_unconfirmed"]:  # the station's sensor
        rows += [("rejects confirmed / unconfirmed", f"{r['rejects_confirmed']} / {r['rejects_unconfirmed']}")]
    rows += [("trigger overruns (IDs lost)", f"{r['trigger_overruns']} ({r['triggers_lost']})")]
    return rows


class PrometheusCollector:
    """`defectgate_line_<counter>_total` for each of COUNTERS and `defectgate_line_link_up`, read from
    the running station's LineStats at each scrape (nothing to update on the line's threads)."""

    def __init__(self, get_stats):
        self.get_stats = get_stats

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        stats = self.get_stats()
        if stats is None:
            return
        for name, doc in COUNTERS.items():
            yield CounterMetricFamily(f"defectgate_line_{name}", doc, value=getattr(stats, name))
        if stats.link_up is not None:
            yield GaugeMetricFamily("defectgate_line_link_up", "1 while the PLC result block link is up",
                                    value=float(stats.link_up))
