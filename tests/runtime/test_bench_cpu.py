"""The bench's CPU accounting by thread role: real threads and a real process burning a known amount
of CPU between two marks, read back from /proc."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from defectgate.bench_cpu import ROLES, CpuWindow, role_of, thread_cpu_s

pytestmark = pytest.mark.skipif(not thread_cpu_s(), reason="needs Linux /proc")

BURN_S = 0.3
PARTS = 10
TICK_MS_PER_PART = 2 * 10.0 / PARTS  # /proc counts in 10 ms ticks, once at each mark


def _burn(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_each_threads_cpu_lands_in_its_role_per_part():
    started, burnt, release = threading.Event(), threading.Event(), threading.Event()

    def decide():  # alive at both marks: a thread that ended before the second mark would be lost
        started.wait()
        _burn(BURN_S)
        burnt.set()
        release.wait()

    worker = threading.Thread(target=decide, name="decide")
    idle = threading.Thread(target=release.wait, name="capture")
    worker.start()
    idle.start()
    window = CpuWindow()
    assert window.per_part_ms() is None, "no window before two marks"
    window.mark(0)
    started.set()
    burnt.wait(30)
    window.mark(PARTS)
    release.set()
    worker.join()
    idle.join()
    cpu = window.per_part_ms()
    assert set(cpu) == {*ROLES, "total"}
    assert cpu["decide"] == pytest.approx(BURN_S * 1000 / PARTS, abs=TICK_MS_PER_PART + 1.0)
    assert cpu["capture"] <= TICK_MS_PER_PART
    assert cpu["total"] == pytest.approx(sum(cpu[r] for r in ROLES), abs=0.01)


def test_a_named_process_counts_in_its_role():
    burner = ("import sys, time\nprint('ready', flush=True); sys.stdin.readline()\n"
              f"end = time.process_time() + {BURN_S}\nwhile time.process_time() < end: pass\n"
              "print('done', flush=True); sys.stdin.readline()\n")
    child = subprocess.Popen([sys.executable, "-c", burner], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        window = CpuWindow(lambda: {"timing": child.pid})
        window.mark(0)
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "done"
        window.mark(PARTS)
        cpu = window.per_part_ms()
        assert cpu["timing"] == pytest.approx(BURN_S * 1000 / PARTS, abs=TICK_MS_PER_PART + 1.0)
    finally:
        child.kill()
        child.wait()


def test_a_process_restarted_between_the_marks_gives_no_figure():
    pids = iter([1, 2])  # the timing process died and a new one took over
    window = CpuWindow(lambda: {"timing": next(pids)})
    window.mark(0)
    window.mark(PARTS)
    assert window.per_part_ms() is None


def test_threads_python_did_not_start_are_the_engines():
    assert role_of(None) == "engine" and role_of("inference-1") == "engine"
    assert role_of("timing") == "timing" and role_of("watchdog") == "other" and role_of("MainThread") == "other"
