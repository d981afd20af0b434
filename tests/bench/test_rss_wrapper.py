"""bench.rss_wrapper: a task's peak RSS, and the CPU time the machine spent while it ran."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from bench.measure import RESULT_PREFIX, run_child
from bench.rss_wrapper import busy_cpu_seconds
from tests.conftest import REPO

# A task that sleeps while a grandchild it never waits for burns one CPU-second, as the sync's workers do
# (children of a forkserver nobody reaps): the task's own rusage holds none of that second.
_GRANDCHILD_WORKS = textwrap.dedent("""
    import os, sys, time
    done_reading, done_writing = os.pipe()
    if os.fork() == 0:
        if os.fork() == 0:  # the grandchild, handed to init once its parent exits
            started = time.process_time()
            while time.process_time() - started < 1.0:
                pass
            os.write(done_writing, b"x")
        os._exit(0)
    os.read(done_reading, 1)
""")


def test_busy_time_is_every_tick_but_idle_and_iowait(tmp_path):
    stat = tmp_path / "stat"
    #                user nice system idle iowait irq softirq steal guest guest_nice
    stat.write_text("cpu  1000 20 300 9000 500 7 3 10 400 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n", encoding="ascii")
    assert busy_cpu_seconds(stat) == pytest.approx((1000 + 20 + 300 + 7 + 3 + 10) / os.sysconf("SC_CLK_TCK"))
    assert busy_cpu_seconds(tmp_path / "missing") is None


def test_the_cpu_of_workers_nobody_waits_for_counts():
    run = run_child([sys.executable, "-m", "bench.rss_wrapper", sys.executable, "-c", _GRANDCHILD_WORKS],
                    cwd=REPO, timeout=60)
    assert run.machine_cpu_seconds is not None
    assert run.machine_cpu_seconds >= 0.95, run
    assert run.peak_rss_mb > 0


def test_the_result_line_comes_after_the_tasks_own():
    completed = subprocess.run([sys.executable, "-m", "bench.rss_wrapper", sys.executable, "-c", "print('task')"],
                               capture_output=True, text=True, cwd=REPO, check=True)
    assert completed.stdout.splitlines()[0] == "task"
    wrapped = [json.loads(line[len(RESULT_PREFIX):]) for line in completed.stdout.splitlines()
               if line.startswith(RESULT_PREFIX)]
    assert set(wrapped[-1]) == {"peak_rss_mb", "machine_cpu_seconds"}
