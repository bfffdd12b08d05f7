"""What would model B have done on the parts model A judged? The part-level diff of
`defectgate replay --models A B`.

Per part the two verdicts fall in one of four cells (both NG, both OK, only A NG, only B NG), in total
and per defect class (per class, "NG" means the model's verdict names that class; each class's cells
sum to the parts). Every
part where they disagree is drawn once with both models' boxes (A solid blue, B dashed orange) into
`disagreements/`, and listed in `diff.json` and `report.html`. Frames that could not be read are
counted and named, never dropped silently. Where the recording carries truth (label files beside the
images), each model's escapes and overkills are counted too.

`diff.json` holds no clock or wall time and is written with sorted keys and rounded numbers, so the
same recording and models give the same bytes every time (a test checks it).
"""

from __future__ import annotations

import html
import json
from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .staging import write_text_atomic
from .types import Verdict

CELLS = ("both_ng", "both_ok", "a_only_ng", "b_only_ng")
COLOR_A = (200, 90, 20)  # BGR: blue
COLOR_B = (20, 140, 255)  # BGR: orange


def cell(a_ng: bool, b_ng: bool) -> str:
    """The diff cell of a part (or of one class on a part) that A and B call NG or not."""
    return {(True, True): "both_ng", (False, False): "both_ok", (True, False): "a_only_ng",
            (False, True): "b_only_ng"}[(bool(a_ng), bool(b_ng))]


def _classes_named(v: Verdict, classes: list[str]) -> set[str]:
    return {r for r in v.reasons if r in classes}


def _side(v: Verdict, classes: list[str]) -> dict[str, Any]:
    return {"verdict": v.outcome.value, "reasons": list(v.reasons), "failsafe": bool(v.failsafe),
            "detections": v.detections.to_records(classes)}


def _dashed_rect(img: np.ndarray, p1: tuple[int, int], p2: tuple[int, int], color, dash: int = 6) -> None:
    (x1, y1), (x2, y2) = p1, p2
    for xa, ya, xb, yb in ((x1, y1, x2, y1), (x1, y2, x2, y2), (x1, y1, x1, y2), (x2, y1, x2, y2)):
        n = max(1, int(max(abs(xb - xa), abs(yb - ya)) // dash))
        for k in range(0, n, 2):
            s, e = k / n, min(1.0, (k + 1) / n)
            cv2.line(img, (int(xa + (xb - xa) * s), int(ya + (yb - ya) * s)),
                     (int(xa + (xb - xa) * e), int(ya + (yb - ya) * e)), color, 2)


def draw_both(image: np.ndarray, a: Verdict, b: Verdict, classes: list[str]) -> np.ndarray:
    """The part with A's boxes (solid) and B's (dashed), each labelled with its model letter."""
    out = image.copy() if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    for tag, v, color in (("A", a, COLOR_A), ("B", b, COLOR_B)):
        for rec in v.detections.to_records(classes):
            x1, y1, x2, y2 = (int(round(c)) for c in rec["xyxy"])
            if tag == "A":
                cv2.rectangle(out, (x1, y1), (x2, y2), color, 2)
            else:
                _dashed_rect(out, (x1, y1), (x2, y2), color)
            text = f"{tag}:{rec.get('class', rec['class_id'])} {rec['confidence']:.2f}"
            cv2.putText(out, text, (x1, max(10, y1 - 3 if tag == "A" else y2 + 11)), cv2.FONT_HERSHEY_SIMPLEX, 0.35,
                        color, 1, cv2.LINE_AA)
    return out


class DiffReport:
    """Collects the pairs of verdicts of one replay and writes the diff (JSON, images, HTML)."""

    def __init__(self, out: str | Path, classes: list[str], a_version: str, b_version: str, source: str):
        self.out = Path(out)
        self.classes = list(classes)
        self.models = {"a": a_version, "b": b_version}
        self.source = source
        self.counts: Counter[str] = Counter({c: 0 for c in CELLS})
        self.per_class = {c: Counter({k: 0 for k in CELLS}) for c in self.classes}
        self.truth = {m: Counter(parts=0, ng_parts=0, escapes=0, overkills=0) for m in ("a", "b")}
        self.disagreements: list[dict[str, Any]] = []
        self.unreadable: list[dict[str, str]] = []
        self.unjudged: list[dict[str, Any]] = []  # parts one of the models gave no verdict for
        (self.out / "disagreements").mkdir(parents=True, exist_ok=True)
        for old in (self.out / "disagreements").glob("*.jpg"):  # a replay into the same folder starts clean
            old.unlink()

    def add(self, part_id: int, name: str, image: np.ndarray | None, a: Verdict, b: Verdict) -> str:
        """Count one part; draw and list it when the models disagree. Returns its cell."""
        where = cell(a.is_ng, b.is_ng)
        self.counts[where] += 1
        names_a, names_b = _classes_named(a, self.classes), _classes_named(b, self.classes)
        for c in self.classes:  # every part falls in one cell per class: each class's cells sum to the parts
            self.per_class[c][cell(c in names_a, c in names_b)] += 1
        truth = a.truth_ng if a.truth_ng is not None else b.truth_ng
        if truth is not None:
            for m, v in (("a", a), ("b", b)):
                t = self.truth[m]
                t["parts"] += 1
                t["ng_parts"] += truth
                t["escapes"] += truth and not v.is_ng
                t["overkills"] += (not truth) and v.is_ng
        if where in ("a_only_ng", "b_only_ng"):
            entry: dict[str, Any] = {"part_id": int(part_id), "name": name, "cell": where, "truth_ng": truth,
                                     "a": _side(a, self.classes), "b": _side(b, self.classes), "image": None}
            if image is not None:
                rel = Path("disagreements") / f"{int(part_id):06d}_{where}.jpg"
                ok, buf = cv2.imencode(".jpg", draw_both(image, a, b, self.classes), [cv2.IMWRITE_JPEG_QUALITY, 90])
                if ok:
                    (self.out / rel).write_bytes(buf.tobytes())
                    entry["image"] = str(rel)
            self.disagreements.append(entry)
        return where

    def add_unreadable(self, name: str, why: str) -> None:
        self.unreadable.append({"name": name, "why": why})

    def add_unjudged(self, part_id: int, name: str, why: str) -> None:
        self.unjudged.append({"part_id": int(part_id), "name": name, "why": why})

    def summary(self) -> dict[str, Any]:
        parts = sum(self.counts.values())
        return {
            "models": self.models, "source": self.source, "classes": self.classes, "parts": parts,
            "counts": dict(self.counts), "agreement": round((self.counts["both_ng"] + self.counts["both_ok"]) / parts, 4)
            if parts else None,
            "per_class": {c: dict(v) for c, v in self.per_class.items()},
            "truth": {m: dict(v) for m, v in self.truth.items()} if self.truth["a"]["parts"] else None,
            "unreadable": {"count": len(self.unreadable), "frames": self.unreadable},
            "unjudged": {"count": len(self.unjudged), "parts": sorted(self.unjudged, key=lambda u: u["part_id"])},
            "disagreements": sorted(self.disagreements, key=lambda d: d["part_id"]),
        }

    def write(self) -> dict[str, Any]:
        """diff.json (byte-stable) and report.html next to the images; returns the summary."""
        data = self.summary()
        write_text_atomic(self.out / "diff.json", json.dumps(data, indent=2, sort_keys=True) + "\n")
        write_text_atomic(self.out / "report.html", render_html(data))
        return data


def render_html(d: dict[str, Any]) -> str:
    esc = html.escape
    m = d["models"]
    rows = "".join(f"<tr><td>{esc(k)}</td><td>{v}</td></tr>" for k, v in d["counts"].items())
    per_class = "".join(
        f"<tr><td>{esc(c)}</td>" + "".join(f"<td>{v[k]}</td>" for k in CELLS) + "</tr>" for c, v in d["per_class"].items())
    truth = ""
    if d["truth"]:
        truth = "<h2>Against the recording's labels</h2><table><tr><th></th><th>NG parts</th><th>escapes</th>" \
                "<th>overkills</th></tr>" + "".join(
                    f"<tr><td>{esc(k.upper())} {esc(m[k])}</td><td>{t['ng_parts']}</td><td>{t['escapes']}</td>"
                    f"<td>{t['overkills']}</td></tr>" for k, t in d["truth"].items()) + "</table>"
    cards = "".join(
        f"<figure><img src='{esc(x['image'])}' alt='part {x['part_id']}'><figcaption>part {x['part_id']} "
        f"({esc(x['name'])}): A {esc(x['a']['verdict'])} {esc(', '.join(x['a']['reasons']))} · B "
        f"{esc(x['b']['verdict'])} {esc(', '.join(x['b']['reasons']))}</figcaption></figure>"
        if x["image"] else f"<p>part {x['part_id']} ({esc(x['name'])}): no image</p>" for x in d["disagreements"])
    unread = "".join(f"<li>{esc(u['name'])}: {esc(u['why'])}</li>" for u in d["unreadable"]["frames"])
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>replay diff {esc(m['a'])} vs {esc(m['b'])}</title>
<style>body{{font-family:sans-serif;margin:1em}}table{{border-collapse:collapse;margin:.5em 0}}td,th{{border:1px solid #aaa;
padding:2px 8px}}figure{{display:inline-block;margin:4px}}img{{max-width:320px}}</style></head><body>
<h1>Replay diff: A = {esc(m['a'])} (solid blue boxes), B = {esc(m['b'])} (dashed orange)</h1>
<p>source {esc(d['source'])} · {d['parts']} parts · agreement {d['agreement']} · {d['unreadable']['count']} unreadable frames ·
{d['unjudged']['count']} parts without both verdicts</p>
<table>{rows}</table><h2>Per class</h2><table><tr><th>class</th>{''.join(f'<th>{k}</th>' for k in CELLS)}</tr>
{per_class}</table>{truth}<h2>Disagreements ({len(d['disagreements'])})</h2>{cards}
<h2>Unreadable frames</h2><ul>{unread or '<li>none</li>'}</ul></body></html>
"""


def replay_models(cfg: Any, out: str | Path) -> dict[str, Any]:
    """Run the station on a recording with model A live (simulated ejector) and model B in lossless shadow,
    then write the part-level diff from the archive rows the run wrote (the parts are A's, the shadow
    rows B's), so the diff and the archive agree by construction. Returns the diff summary."""
    import contextlib
    import sqlite3

    from .report import line_report
    from .station import build_station
    from .types import Detections, Outcome

    built = build_station(cfg)
    station = built.station
    stats = station.run()
    report = line_report(stats, station.inspector.backend.name, station.inspector.version, built.alarm, station.source)
    if built.archive is not None:
        built.archive.end_run(report)
    a_version, classes = station.inspector.version, list(station.inspector.classes)
    built.close()
    archive = built.archive.root  # type: ignore[union-attr]
    b_version = next(iter(stats.shadow["versions"]), "") if stats.shadow else ""
    source = station.source
    names = list(getattr(source, "names", []))
    diff = DiffReport(out, classes, a_version, b_version or str(cfg.shadow.bundle), cfg.source.uri.split("?")[0])
    for name, why in getattr(source, "unreadable", []):
        diff.add_unreadable(name, why)

    def verdict(part_id, outcome, reasons, dets, truth, failsafe=0):
        return Verdict(part_id=part_id, outcome=Outcome(outcome), reasons=json.loads(reasons),
                       detections=Detections.from_records(json.loads(dets)), failsafe=bool(failsafe),
                       truth_ng=None if truth is None else bool(truth))

    with contextlib.closing(sqlite3.connect(f"file:{archive / 'parts.sqlite'}?mode=ro", uri=True)) as conn:
        rows = conn.execute(
            "SELECT p.part_id, p.verdict, p.reasons, p.detections, p.truth_ng, p.failsafe, p.image_path, s.verdict, "
            "s.reasons, s.detections, s.image_path FROM parts p LEFT JOIN shadow s ON s.run_id = p.run_id AND "
            "s.part_id = p.part_id WHERE p.run_id = ? ORDER BY p.part_id", (built.run_id,)).fetchall()
    for part, av, ar, ad, truth, fs, a_img, bv, br, bd, b_img in rows:
        name = names[part] if 0 <= part < len(names) else f"part {part}"
        if bv is None:  # A could not judge it (fail-safe) or B could not: listed, never dropped silently
            diff.add_unjudged(part, name, "model A could not judge it (fail-safe)" if fs else "model B gave no verdict")
            continue
        a, b = verdict(part, av, ar, ad, truth, fs), verdict(part, bv, br, bd, truth)
        image = None
        if a.is_ng != b.is_ng and (a_img or b_img):
            image = cv2.imread(str(archive / (a_img or b_img)), cv2.IMREAD_COLOR)
        diff.add(part, name, image, a, b)
    return diff.write()
