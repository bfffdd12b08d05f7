"""The watchdog: a thread that looks at the station's heartbeats and raises the alarm output when
a stage stalls (inference hung in the engine, decision stuck, no frames from a free-running
camera, camera link down). It never stops the line itself: parts that cannot be judged are already
rejected by the scheduler's pre-armed rejects; the alarm tells people (or the PLC) to act.
Conditions clear themselves when the stage moves again."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from .sdnotify import SystemdNotifier

log = logging.getLogger(__name__)


class Watchdog:
    def __init__(self, station: Any, alarm: Any, stall_s: float, capture_stall_s: float | None = None,
                 notifier: SystemdNotifier | None = None):
        self.station, self.alarm = station, alarm
        # under systemd (Type=notify, WatchdogSec) the watchdog pings only while no condition holds,
        # so a stalled line gets restarted by systemd as well as raising the alarm output
        self.notifier = notifier if notifier is not None else SystemdNotifier()
        self.stall_s, self.capture_stall_s = stall_s, capture_stall_s
        self.stalls: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)
        self._period = max(0.02, min(stall_s / 4, 0.25))
        self._last_ping = float("-inf")

    def start(self) -> None:
        self.notifier.ready(f"inspecting {getattr(self.station.source, 'uri', '')}")
        self._thread.start()

    def stop(self) -> None:
        self.notifier.stopping()
        self._stop.set()
        self._thread.join(2.0)

    def check(self) -> dict[str, str]:
        """The conditions that hold now: {condition: detail}."""
        st = self.station
        now = st.clock.now()
        out: dict[str, str] = {}
        for stage, since in (("inference_stalled", st.infer_busy_since), ("decide_stalled", st.decide_busy_since)):
            if since is not None and now - since > self.stall_s:
                out[stage] = f"one frame has been in {stage.split('_')[0]} for {now - since:.1f} s"
        if self.capture_stall_s is not None and not st.source.exhausted and not st.stop.is_set():
            last = st.last_frame_t if st.last_frame_t is not None else st.stats.t_start
            if now - last > self.capture_stall_s:
                out["capture_stalled"] = f"no frame for {now - last:.1f} s"
        connected = getattr(st.source, "connected", None)
        if connected is not None and not connected.is_set() and not st.source.exhausted:
            out["camera_lost"] = f"{st.source.uri} disconnected, reconnecting"
        return out

    def _run(self) -> None:
        active: set[str] = set()
        while not self._stop.wait(self._period):
            now_active = self.check()
            for cond, detail in now_active.items():
                if cond not in active:
                    self.stalls[cond] = self.stalls.get(cond, 0) + 1
                    if self.alarm is not None:
                        self.alarm.raise_(cond, detail)
                    else:
                        log.error("watchdog: %s: %s", cond, detail)
            for cond in active - set(now_active):
                if self.alarm is not None:
                    self.alarm.clear(cond)
            active = set(now_active)
            interval = self.notifier.watchdog_interval_s
            if not active and interval is not None and time.monotonic() - self._last_ping >= interval:
                self.notifier.watchdog()
                self._last_ping = time.monotonic()
