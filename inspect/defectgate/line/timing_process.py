"""Reject timing in a process of its own (`station_fires` mode, `line.timing.process: true`): no
thread of the station (NumPy, the engine's bindings, the GIL) stands between a due time and a
pulse. The child owns the actuator and a heap of armed pulses; it receives arm / cancel over a
pipe and reports fired / missed / failed and a heartbeat back. Times are perf_counter values,
CLOCK_MONOTONIC on Linux, the same in both processes.

`ProcessScheduler` is a drop-in for `RejectScheduler` (same arm / retime / observe_encoder /
resolve): the parent keeps the geometry and the fail-safe bookkeeping (every part armed at
capture, cancelled only by an OK in time) and mirrors each change to the child. Where the
station's timing thread ran `_timing`, it runs `pump(on_fired, on_missed, until)`.

Liveness: the child beats every `heartbeat_s`; a child that exits or is silent for `dead_after_s`
is killed and restarted, and every armed part due before the new child can take it (or that
the dead child may or may not have fired) is reported missed with reason "timing process died":
counted and alarmed, never assumed fired."""

from __future__ import annotations

import heapq
import logging
import multiprocessing as mp
import os
import select
import threading
import time
from multiprocessing.connection import wait
from typing import Any, Callable

from ..clock import Clock, MonotonicClock
from ..scheduler import RejectScheduler
from ..types import RejectCommand

log = logging.getLogger(__name__)

# The child sleeps until this long before a pulse and spins the rest. A spin at real-time priority
# is a core taken from the engine: against the old 2 ms, 0.5 ms gave the station a median 1.10x the
# parts/s on 2 vCPUs (docs/performance.md, "The timing process's spin"). A wake later than the
# margin is a late pulse: under the bench's load on 2 vCPUs (Zen 3, KVM) select() woke 0.06-0.09 ms
# late at p50 and 0.10-0.43 ms at p99, with single outliers of 1.6-3.2 ms that only a spin covers.
WAKE_BEFORE_PULSE_S = 0.0005
RT_PRIORITY = 20


# ---------------- the child ----------------
def _child_main(conn, actuator_kind: str, actuator_options: dict[str, Any], heartbeat_s: float) -> None:
    from ..actuators import open_actuator

    try:  # above the station's own timing thread (10); needs CAP_SYS_NICE, like the systemd unit grants
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(RT_PRIORITY))
    except (AttributeError, OSError):
        pass
    actuator = open_actuator(actuator_kind, actuator_options, MonotonicClock())
    conn.send(("ready", os.getpid()))
    try:
        _serve(conn, actuator, heartbeat_s)
    finally:
        actuator.close()


def wait_readable(conn, timeout_s: float) -> None:
    """Until `conn` has a message or `timeout_s` passed. select() takes microseconds, where
    Connection.poll rounds a timeout up to whole milliseconds: up to 1 ms more spin per pulse."""
    select.select([conn], [], [], timeout_s)


def _serve(conn, actuator, heartbeat_s: float, wait: Callable[[Any, float], None] = wait_readable) -> None:
    """The child's loop: take arm / cancel / stop, sleep until just before the next pulse, spin
    the rest, fire, report."""
    from ..errors import ActuatorError

    heap: list[tuple[float, int, int]] = []
    armed: dict[int, tuple[int, RejectCommand]] = {}
    gen = 0
    next_beat = 0.0
    while True:
        now = time.perf_counter()
        if now >= next_beat:
            conn.send(("beat", now))
            next_beat = now + heartbeat_s
        due = heap[0][0] if heap else None
        wait_s = min(next_beat - now, heartbeat_s if due is None else due - now - WAKE_BEFORE_PULSE_S)
        if wait_s > 0:
            wait(conn, wait_s)
        stop = False
        while conn.poll():  # take every queued command, then look at the heap again
            msg = conn.recv()
            if msg[0] == "arm":
                cmd: RejectCommand = msg[1]
                gen += 1
                armed[cmd.part_id] = (gen, cmd)
                heapq.heappush(heap, (cmd.fire_at, cmd.part_id, gen))
            elif msg[0] == "cancel":
                armed.pop(msg[1], None)
            elif msg[0] == "stop":
                stop = True
                break
        if stop:
            return
        while heap and heap[0][0] - time.perf_counter() <= WAKE_BEFORE_PULSE_S:
            fire_at, part_id, g = heap[0]
            entry = armed.get(part_id)
            if entry is None or entry[0] != g:
                heapq.heappop(heap)
                continue
            while time.perf_counter() < fire_at:  # spin the last stretch: sub-millisecond pulses
                pass
            heapq.heappop(heap)
            del armed[part_id]
            cmd = entry[1]
            t = time.perf_counter()
            if t > cmd.deadline:
                conn.send(("missed", cmd, "fire window missed"))
                continue
            try:
                actuator.fire(cmd.pulse_s)
                conn.send(("fired", cmd, t))
            except ActuatorError as exc:
                conn.send(("failed", cmd, str(exc)))


# ---------------- the parent ----------------
OnFired = Callable[[RejectCommand, "float | None", "str | None"], None]  # (cmd, t fired or None, error)
OnMissed = Callable[[RejectCommand, str], None]


class ProcessScheduler(RejectScheduler):
    def __init__(self, belt_speed_mm_s: float, camera_to_ejector_mm: float, pulse_s: float,
                 decision_margin_s: float = 0.005, actuator_kind: str = "simulated",
                 actuator_options: dict[str, Any] | None = None, clock: Clock | None = None,
                 heartbeat_s: float = 0.05, dead_after_s: float = 0.25, restart_guard_s: float = 0.05):
        super().__init__(belt_speed_mm_s, camera_to_ejector_mm, pulse_s, decision_margin_s)
        self.actuator_kind = getattr(actuator_kind, "value", actuator_kind)
        self.actuator_options = dict(actuator_options or {})
        self.clock = clock or MonotonicClock()
        self.heartbeat_s, self.dead_after_s, self.restart_guard_s = heartbeat_s, dead_after_s, restart_guard_s
        self._ctx = mp.get_context("spawn")  # never fork a process that runs threads
        self._send_lock = threading.Lock()
        self._proc = None
        self._conn = None
        self._last_heard = 0.0
        self.restarts = 0
        self.deaths = 0
        self.unguaranteed = 0  # parts reported missed because the process died
        self.child_pid: int | None = None
        self._closed = False

    # ---- process ----
    def start(self, timeout_s: float = 20.0) -> "ProcessScheduler":
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(target=_child_main, name="defectgate-timing", daemon=True,
                                 args=(child, self.actuator_kind, self.actuator_options, self.heartbeat_s))
        proc.start()
        child.close()
        if not parent.poll(timeout_s):
            proc.kill()
            raise RuntimeError(f"the timing process did not start within {timeout_s:g} s")
        try:
            _, self.child_pid = parent.recv()
        except EOFError as exc:  # it died while starting: the actuator could not be opened
            proc.join(1.0)
            from ..errors import ActuatorError

            raise ActuatorError(f"the timing process could not start its actuator {self.actuator_kind} "
                                f"{self.actuator_options} (exit code {proc.exitcode}); see its log above") from exc
        self._proc, self._conn = proc, parent
        self._last_heard = time.perf_counter()
        return self

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.is_alive()

    def _send(self, msg: tuple) -> None:
        with self._send_lock:
            if self._conn is None:
                return
            try:
                self._conn.send(msg)
            except (OSError, EOFError, ValueError):  # the child is gone: pump() sees it and restarts
                pass

    # ---- RejectScheduler, mirrored to the child ----
    def arm(self, part_id: int, t_capture: float, offset_mm: float = 0.0, reason: str = "unjudged",
            encoder_mm: float | None = None) -> RejectCommand:
        cmd = super().arm(part_id, t_capture, offset_mm, reason, encoder_mm)
        self._send(("arm", cmd))
        return cmd

    def _move(self, part_id, armed, fire_at: float) -> None:  # retime and encoder moves land here
        super()._move(part_id, armed, fire_at)
        self._send(("arm", armed.command))

    def resolve(self, part_id: int, reject: bool, now: float) -> bool:
        on_time = super().resolve(part_id, reject, now)
        if on_time and not reject:
            self._send(("cancel", part_id))
        return on_time

    # ---- the station's timing thread ----
    def pump(self, on_fired: OnFired, on_missed: OnMissed, until: Callable[[], bool],
             on_died: Callable[[str], None] | None = None) -> None:
        """Run until `until()` holds and no part is armed: deliver the child's reports, watch its
        liveness, restart it when it dies."""
        while not self._closed:
            if until() and self.pending() == 0:
                return
            conn, proc = self._conn, self._proc
            if conn is None or proc is None:
                raise RuntimeError("ProcessScheduler.pump() before start()")
            try:
                ready = wait([conn, proc.sentinel], timeout=self.heartbeat_s)
            except OSError:  # close() from another thread closed the pipe under us
                return
            if conn in ready:
                try:
                    while conn.poll():
                        self._report(conn.recv(), on_fired, on_missed)
                except (EOFError, OSError):
                    ready.append(proc.sentinel)
            silent = time.perf_counter() - self._last_heard > self.dead_after_s
            if proc.sentinel in ready or not proc.is_alive() or silent:
                why = f"exit code {proc.exitcode}" if not proc.is_alive() else "silent, killed"
                self._restart(why, on_missed, on_died)
            self.pop_due(self.clock.now() - 1.0)  # forget parts long resolved (fired ones are gone already)

    def _report(self, msg: tuple, on_fired: OnFired, on_missed: OnMissed) -> None:
        self._last_heard = time.perf_counter()
        kind = msg[0]
        if kind == "beat":
            return
        cmd: RejectCommand = msg[1]
        with self._lock:
            self._parts.pop(cmd.part_id, None)
        if kind == "fired":
            on_fired(cmd, msg[2], None)
        elif kind == "failed":
            on_fired(cmd, None, msg[2])
        elif kind == "missed":
            self.missed_fires += 1
            on_missed(cmd, msg[2])

    def _restart(self, why: str, on_missed: OnMissed, on_died: Callable[[str], None] | None) -> None:
        self.deaths += 1
        log.error("timing process %s died (%s); restarting it", self.child_pid, why)
        if on_died is not None:
            on_died(why)
        if self._proc is not None and self._proc.is_alive():
            self._proc.kill()
        if self._proc is not None:
            self._proc.join(1.0)
        if self._conn is not None:
            self._conn.close()
        self._conn = None
        self.start()
        self.restarts += 1
        horizon = self.clock.now() + self.restart_guard_s
        lost, keep = [], []
        with self._lock:
            for part_id, armed in list(self._parts.items()):
                if armed.cancelled:
                    continue
                if armed.command.fire_at <= horizon:  # due in the gap, or the dead child may have fired it
                    del self._parts[part_id]
                    lost.append(armed.command)
                else:
                    keep.append(armed.command)
        for cmd in keep:
            self._send(("arm", cmd))
        for cmd in lost:
            self.missed_fires += 1
            self.unguaranteed += 1
            on_missed(cmd, "timing process died")

    def close(self) -> None:
        self._closed = True
        self._send(("stop",))
        if self._proc is not None:
            self._proc.join(2.0)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(1.0)
        if self._conn is not None:
            self._conn.close()
            self._conn = None
