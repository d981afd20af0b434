"""Run one measured task in a child process: its wall time, its own peak RSS and the machine's CPU time.

Each run is a fresh process, so one run's memory never counts against another.
``os.wait4`` returns the rusage of exactly that child (ru_maxrss in KiB on Linux);
the CPU time is every busy core-second of the machine meanwhile (``bench.rss_wrapper``).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# A task prints one line "BENCH-RESULT {json}" with its own timing and counts.
RESULT_PREFIX = "BENCH-RESULT "
_REPO = Path(__file__).resolve().parent.parent


class TaskFailed(RuntimeError):
    pass


@dataclass(frozen=True)
class Run:
    wall_seconds: float  # the whole child process, start to exit
    peak_rss_mb: float
    reported: dict[str, Any]  # what the task printed (e.g. its own work seconds)
    # Busy core-seconds of the whole machine while the task ran (None where it cannot be read).
    machine_cpu_seconds: float | None = None

    @property
    def seconds(self) -> float:
        """The task's own work time when it reports one, else the process wall time."""
        return float(self.reported.get("seconds", self.wall_seconds))


def run_child(argv: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
              timeout: float = 3600) -> Run:
    env = dict(os.environ if env is None else env)
    # The children import bench.* whatever their working directory.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO), env.get("PYTHONPATH")]))
    started = time.perf_counter()
    process = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd,
                               text=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise TaskFailed(f"{' '.join(argv[:4])}... took longer than {timeout:.0f} s") from None
    # Peak RSS comes from bench.rss_wrapper (the task's parent), which reports it itself.
    wall = time.perf_counter() - started
    reported: dict[str, Any] = {}
    for line in stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            reported.update(json.loads(line[len(RESULT_PREFIX):]))
    if process.returncode != 0:
        tail = "\n".join((stderr or stdout).strip().splitlines()[-15:])
        raise TaskFailed(f"{' '.join(argv[:6])} exited {process.returncode}:\n{tail}")
    peak = float(reported.pop("peak_rss_mb", 0.0))
    cpu = reported.pop("machine_cpu_seconds", None)
    output = [line for line in stdout.splitlines() if line.strip() and not line.startswith(RESULT_PREFIX)]
    if output:
        reported.setdefault("output_tail", output[-1][:500])
    return Run(wall, peak, reported, None if cpu is None else float(cpu))


def python_task(module: str, *args: str) -> list[str]:
    """argv running ``python -m bench.rss_wrapper -- python -m module args``: peak RSS of the task measured."""
    return [sys.executable, "-m", "bench.rss_wrapper", sys.executable, "-m", module, *args]


def command_task(*argv: str) -> list[str]:
    return [sys.executable, "-m", "bench.rss_wrapper", *argv]


@dataclass
class Figure:
    """One figure: the median of several runs, with min and max."""

    name: str
    unit: str
    values: list[float] = field(default_factory=list)
    peak_rss_mb: list[float] = field(default_factory=list)
    machine_cpu_seconds: list[float] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    available: bool = True
    reason: str | None = None
    # What must exist for this figure ("sync", "api", "postgres"); set when it is not available.
    requires: str | None = None
    error: str | None = None

    def add(self, value: float, peak_rss_mb: float | None = None, machine_cpu_seconds: float | None = None) -> None:
        self.values.append(value)
        if peak_rss_mb is not None:
            self.peak_rss_mb.append(peak_rss_mb)
        if machine_cpu_seconds is not None:
            self.machine_cpu_seconds.append(machine_cpu_seconds)

    def add_run(self, run: Run) -> None:
        """One run of a task timed as a whole: its time, peak RSS and the machine's CPU time."""
        self.add(run.seconds, run.peak_rss_mb, run.machine_cpu_seconds)

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None

    def as_dict(self) -> dict[str, Any]:
        if self.error is not None:
            return {"name": self.name, "unit": self.unit, "available": False, "error": self.error}
        if not self.available:
            return {"name": self.name, "unit": self.unit, "available": False, "reason": self.reason,
                    "requires": self.requires}
        result: dict[str, Any] = {
            "name": self.name, "unit": self.unit, "available": True, "median": self.median,
            "min": min(self.values), "max": max(self.values), "runs": self.values,
        }
        for name, values in (("peak_rss_mb", self.peak_rss_mb), ("machine_cpu_seconds", self.machine_cpu_seconds)):
            if values:
                result[name] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
        result.update(self.details)
        return result


def unavailable(name: str, unit: str, reason: str, requires: str) -> Figure:
    """A figure whose interface or service this checkout or machine does not have."""
    return Figure(name, unit, available=False, reason=reason, requires=requires)


def failed(name: str, unit: str, error: str) -> Figure:
    """A figure whose interface exists but broke: reported as an error, never as "not available"."""
    return Figure(name, unit, available=False, error=error)


def repeat(name: str, unit: str, runs: int, one_run: Callable[[], Run]) -> Figure:
    figure = Figure(name, unit)
    for _ in range(runs):
        figure.add_run(one_run())
    return figure


def emit(**values: Any) -> None:
    """Called by a task: print its result line for the parent."""
    print(RESULT_PREFIX + json.dumps(values), flush=True)


def env_with(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env
