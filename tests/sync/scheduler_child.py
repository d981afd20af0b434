"""The real scheduler loop (``run_scheduler``) in its own process, for the tests that signal it.

    python -m tests.sync.scheduler_child DATA_DIR [--slow-job GATE]

With ``--slow-job`` its one job starts at once, prints "STARTED", waits until the GATE file exists and prints
"FINISHED"; without it no job is due. It prints "READY" once the scheduler runs. Log lines go to stderr.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

from apscheduler.triggers.date import DateTrigger

from adapter import scheduler
from adapter.logs import configure_logging
from adapter.runtime import Runtime
from adapter.settings import settings_from_mapping
from adapter.sync import AMSTERDAM


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir")
    parser.add_argument("--slow-job")
    args = parser.parse_args()
    configure_logging()
    settings = settings_from_mapping({"environment": "development", "data_dir": args.data_dir}, Path("child.yaml"))

    def slow_job() -> None:
        print("STARTED", flush=True)
        while not Path(args.slow_job).exists():
            time.sleep(0.02)
        print("FINISHED", flush=True)

    def idle() -> None:
        pass

    soon = DateTrigger(datetime.now(AMSTERDAM) + timedelta(seconds=0.5))
    later = DateTrigger(datetime.now(AMSTERDAM) + timedelta(days=1))
    job = (scheduler.JobSpec("slow", "a slow job", slow_job, soon) if args.slow_job
           else scheduler.JobSpec("idle", "a job tomorrow", idle, later))
    scheduler.build_jobs = lambda *_args: [job]
    original_start = scheduler.BlockingScheduler.start

    def start(self, *start_args, **start_kwargs):  # type: ignore[no-untyped-def]
        print("READY", flush=True)
        return original_start(self, *start_args, **start_kwargs)

    scheduler.BlockingScheduler.start = start  # type: ignore[method-assign]
    scheduler.run_scheduler(Runtime(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
