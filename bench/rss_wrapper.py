"""Run a command, then report its peak RSS (``os.wait4``: exactly that child's rusage) and the CPU time the
machine spent while it ran.

Usage: python -m bench.rss_wrapper CMD ARGS...; the command's output passes
through, and one more result line carries ``peak_rss_mb`` and ``machine_cpu_seconds``.
The wrapper is tiny, so its own memory never mixes with the task's. When the task
forks helpers (the sync encrypts on all cores) and waits for them, ru_maxrss is the
largest single process of that tree, not their sum.

The CPU time is the machine's, read from ``/proc/stat`` before and after: every
core-second not spent idle. The task's own rusage would miss most of a sync's
work: its reading and sealing workers are children of a forkserver that nobody
waits for, and a PostgreSQL sync hands half its work to the server's process.
Whatever else runs on the machine counts too; the wrapper itself sleeps in
``wait4``. Divided by the cores, it is the shortest the task could take if its work
kept every core busy the whole time (see ``bench.report``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from bench.measure import RESULT_PREFIX

_PROC_STAT = Path("/proc/stat")


def busy_cpu_seconds(proc_stat: Path = _PROC_STAT) -> float | None:
    """Core-seconds the machine has spent not idle since it booted; None where there is no /proc/stat."""
    try:
        first = proc_stat.read_text(encoding="ascii").splitlines()[0].split()
    except (OSError, IndexError):
        return None
    # "cpu user nice system idle iowait irq softirq steal ...", in clock ticks; idle and iowait are not busy.
    # guest time is already counted in user, so the fields after steal are left out.
    ticks = [int(value) for value in first[1:9]]
    busy = sum(ticks) - ticks[3] - ticks[4]
    return busy / os.sysconf("SC_CLK_TCK")


def main(argv: list[str]) -> int:
    busy_before = busy_cpu_seconds()
    pid = os.fork()
    if pid == 0:  # the task
        try:
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    busy_after = busy_cpu_seconds()
    code = os.waitstatus_to_exitcode(status)
    sys.stdout.flush()
    measured: dict[str, float] = {"peak_rss_mb": usage.ru_maxrss / 1024}
    if busy_before is not None and busy_after is not None:
        measured["machine_cpu_seconds"] = busy_after - busy_before
    # The task's own result line came first; merge by printing a second, later one.
    print(RESULT_PREFIX + json.dumps(measured), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
