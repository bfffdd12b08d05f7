"""Shadow mode: a candidate model judges the same parts as the live one and never actuates.

What a plant manager asks before a new model drives the ejector is "what would it have done on today's
parts?". With `shadow.bundle` set (a bundle, or a registry's `candidate` pointer), every frame the
line captures also goes to a `Shadow`: its own thread, at a lower OS priority (`shadow.nice`, inherited
by the engine threads it opens), one inference thread by default, and a bounded queue: when the shadow
falls behind, frames are skipped and counted, and the line never waits for it. Once the live verdict
of a part is made, the shadow concludes its own verdict for that part from the frames it judged (the
same rules as the live model's: parts.PartEvidence) and records it in the archive's `shadow` table,
linked to the live row, with the candidate's version; telemetry counts agreement, parts only the live
model or only the candidate calls NG, and skipped frames. Parts whose live verdict is fail-safe (not a
model's judgement) are not compared.

The pointer is followed like the live model's (hotswap): a new candidate is loaded *in the shadow
thread* between parts (so its engine threads run at the shadow's priority), warmed up, and refused by
name when its class list differs from the live model's; a pointer that disappears (the candidate was
promoted) leaves the shadow idle. A shadow that crashes or is refused never touches the line; the
station alarm is raised only with `shadow.alarm_on_failure`.

`lossless` (replay only) makes the capture thread wait for the shadow instead of skipping frames, so
`defectgate replay --models A B` judges every frame with both models.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .bundle import SIDECAR_NAME, Bundle, load_bundle, read_sidecar
from .clock import Clock
from .config import ShadowSection
from .errors import DefectgateError
from .inspector import Inspector, PartSeen, make_verdict
from .parts import Assignment, PartEvidence
from .tracking import split_by_part
from .types import Detections, Frame, Verdict

log = logging.getLogger(__name__)


@dataclass
class ShadowStats:
    parts: int = 0  # parts the candidate gave a verdict for (compared with the live verdict)
    agree: int = 0
    live_only_ng: int = 0  # the live model rejects, the candidate would pass
    shadow_only_ng: int = 0  # the candidate would reject, the live model passes
    frames: int = 0  # frames the candidate judged
    frames_skipped: int = 0  # frames it had no time for (queue full) or no model for
    parts_unjudged: int = 0  # live parts without a candidate verdict (frames skipped, no candidate, failures)
    live_failsafe: int = 0  # live verdicts that were fail-safe, not a model's: not compared
    failures: int = 0  # frames the candidate failed to judge
    refused: int = 0  # candidate bundles refused (load error, other classes)
    # where the source knows the truth (synthetic line, labelled replay): each model on the compared parts
    truth: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("parts", "ng_parts", "live_escapes", "live_overkills", "shadow_escapes", "shadow_overkills"), 0))
    loads: int = 0
    versions: dict[str, int] = field(default_factory=dict)  # candidate version -> parts judged
    last_error: str = ""

    @property
    def agreement(self) -> float | None:
        return round(self.agree / self.parts, 4) if self.parts else None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("parts", "agree", "live_only_ng", "shadow_only_ng", "frames",
                                              "frames_skipped", "parts_unjudged", "live_failsafe", "failures",
                                              "refused", "loads", "versions", "truth", "last_error", "agreement")}


def _pointer_key(path: Path) -> tuple[str, str] | None:
    """(resolved folder, model sha256) of the bundle the path names now; None while there is none."""
    try:
        target = path.resolve(strict=True)
        return str(target), read_sidecar(target / SIDECAR_NAME).sha256
    except (OSError, DefectgateError) as exc:  # no pointer, or one half-written: "none yet"
        log.debug("shadow: %s has no bundle now (%s)", path, exc)
        return None


class Shadow:
    """The candidate's thread. The station calls `frame` (capture thread) and `part_done` (decide
    thread); both return at once unless `lossless`."""

    def __init__(self, cfg: ShadowSection, build: Callable[[Bundle], Inspector], live_classes: Callable[[], list[str]],
                 clock: Clock, archive: Any = None, telemetry: Any = None, alarm: Any = None):
        if cfg.bundle is None:
            raise ValueError("Shadow needs shadow.bundle")
        self.cfg, self.path = cfg, Path(cfg.bundle)
        self.build, self.live_classes, self.clock = build, live_classes, clock
        self.archive, self.telemetry, self.alarm = archive, telemetry, alarm
        self.stats = ShadowStats()
        self.model: Inspector | None = None
        self._key: tuple[str, str] | None = None
        self._refused: tuple[str, str] | None = None
        self._next_poll = 0.0
        self._polled = False
        self._items: collections.deque = collections.deque()
        self._frames_queued = 0
        self._cv = threading.Condition()
        self._stop = threading.Event()
        self._evidence: dict[int, PartEvidence] = {}
        self._thread = threading.Thread(target=self._run, name="shadow", daemon=True)

    # ---- station side ----
    def start(self) -> "Shadow":
        self._thread.start()
        return self

    def frame(self, frame: Frame, assignment: Assignment) -> None:
        with self._cv:
            while self.cfg.lossless and self._frames_queued >= self.cfg.queue_frames and not self._stop.is_set():
                self._cv.wait(0.1)
            if self._frames_queued >= self.cfg.queue_frames:
                self.stats.frames_skipped += 1  # the line never waits for the shadow
                return
            self._frames_queued += 1
            self._items.append(("frame", frame, assignment))
            self._cv.notify_all()

    def part_done(self, verdict: Verdict) -> None:
        with self._cv:
            self._items.append(("done", verdict, None))
            self._cv.notify_all()

    def close(self, drain_s: float = 10.0) -> None:
        """Judge what is queued (up to `drain_s`), then stop and release the candidate's engine."""
        with self._cv:
            self._items.append(("stop", None, None))
            self._cv.notify_all()
        self._thread.join(drain_s)
        self._stop.set()
        with self._cv:
            self._cv.notify_all()
        self._thread.join(2.0)
        if self._thread.is_alive():  # stuck in an engine call: leave it, the process is ending
            log.error("shadow: still busy after %.0f s at shutdown; %d items not judged", drain_s, len(self._items))
        elif self.model is not None:
            self.model.close()
            self.model = None

    # ---- the shadow thread ----
    def _run(self) -> None:
        self._lower_priority()
        try:
            while not self._stop.is_set():
                self._maybe_reload()
                item = self._next(timeout=0.2)
                if item is None:
                    continue
                kind, a, b = item
                if kind == "stop":
                    return
                if kind == "frame":
                    self._judge(a, b)
                else:
                    self._conclude(a)
        except Exception as exc:  # a crashing candidate must never take the line down
            self._failed("shadow_crashed", f"shadow stopped: {exc}")
            log.exception("shadow thread crashed; the line goes on without it")

    def _next(self, timeout: float):
        with self._cv:
            if not self._items:
                self._cv.wait(timeout)
            if not self._items:
                return None
            item = self._items.popleft()
            if item[0] == "frame":
                self._frames_queued -= 1
            self._cv.notify_all()
            return item

    def _lower_priority(self) -> None:
        try:
            tid = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + self.cfg.nice))
        except (AttributeError, OSError) as exc:
            log.info("shadow thread keeps the line's priority (%s)", exc)

    def _maybe_reload(self) -> None:
        """Between items: follow the bundle or pointer (every watch_s; once when watch_s is 0)."""
        now = self.clock.now()
        if now < self._next_poll or (self.cfg.watch_s <= 0 and self._polled):
            return
        self._polled = True
        self._next_poll = now + self.cfg.watch_s
        key = _pointer_key(self.path)
        if key == self._key or (key is not None and key == self._refused):
            return
        if key is None:  # the pointer is gone (the candidate was promoted): idle until a new one is staged
            log.info("shadow: %s names no bundle now; the shadow is idle", self.path)
            self._swap(None, None)
            return
        try:
            model = self.build(load_bundle(Path(key[0])))
            live = list(self.live_classes())
            if model.classes != live:
                model.close()
                raise ValueError(f"candidate {key[0]} judges classes {model.classes}, the live model {live}; a shadow "
                                 "must judge the same classes to be compared")
            model.warm_up()
        except Exception as exc:  # refused, the line is untouched
            self._refused = key
            self.stats.refused += 1
            self._failed("shadow_refused", f"shadow refused {key[0]}: {exc}")
            return
        self.stats.loads += 1
        log.info("shadow: candidate %s loaded from %s", model.version, key[0])
        self._swap(model, key)

    def _swap(self, model: Inspector | None, key: tuple[str, str] | None) -> None:
        old, self.model, self._key = self.model, model, key
        if old is not None:
            old.close()

    def _failed(self, alarm_key: str, message: str) -> None:
        self.stats.last_error = message
        log.error("%s", message)
        if self.cfg.alarm_on_failure and self.alarm is not None:
            self.alarm.raise_(alarm_key, message)

    def _judge(self, frame: Frame, assignment: Assignment) -> None:
        model = self.model
        if model is None:
            self.stats.frames_skipped += 1
            return
        try:
            batch, info = model.prepare(frame.image)
            judgement = model.judge(frame, model.infer(batch), info)
        except Exception as exc:  # the candidate could not judge this frame; the line is not concerned
            self.stats.failures += 1
            self.stats.last_error = f"frame {frame.seq}: {exc}"
            judgement = model.failed("shadow_inference_failed")
        self.stats.frames += 1
        if assignment.shown:  # free-run: each part in view gets the defects that lie on it
            per_part, _ = split_by_part(judgement.detections, assignment.shown)
            for part, _box in assignment.shown:
                self._evidence.setdefault(part, PartEvidence()).add(frame, judgement,
                                                                    per_part.get(part, Detections.empty()))
        else:
            part = PartSeen.of_frame(frame).part_id
            self._evidence.setdefault(part, PartEvidence()).add(frame, judgement, judgement.detections)

    def _conclude(self, live: Verdict) -> None:
        evidence = self._evidence.pop(live.part_id, None)
        if live.failsafe:
            self.stats.live_failsafe += 1
            return
        if evidence is None or evidence.model is None:
            self.stats.parts_unjudged += 1
            return
        judgement, best = evidence.conclude(evidence.model)
        if judgement.failure or best is None:
            self.stats.parts_unjudged += 1
            return
        part = PartSeen(live.part_id, live.t_capture, live.encoder_mm, best.seq, live.truth_ng)
        verdict = make_verdict(part, judgement, self.clock.now())
        st = self.stats
        st.parts += 1
        st.versions[verdict.model_version] = st.versions.get(verdict.model_version, 0) + 1
        if live.truth_ng is not None:
            t, ng = st.truth, live.truth_ng
            t["parts"] += 1
            t["ng_parts"] += ng
            t["live_escapes"] += ng and not live.is_ng
            t["live_overkills"] += (not ng) and live.is_ng
            t["shadow_escapes"] += ng and not verdict.is_ng
            t["shadow_overkills"] += (not ng) and verdict.is_ng
        if verdict.is_ng == live.is_ng:
            st.agree += 1
        elif live.is_ng:
            st.live_only_ng += 1
        else:
            st.shadow_only_ng += 1
        if self.archive is not None:
            self.archive.submit_shadow(verdict, live, best.image)
        if self.telemetry is not None:
            self.telemetry.shadow_verdict(verdict, live)
