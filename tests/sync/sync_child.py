"""A sync in its own process, for the crash and concurrency tests.

    python -m tests.sync.sync_child DATABASE_URL HOUSEHOLDS [--pause-after N | --pause-at STAGE] [--gate FILE]

It runs the same code path as `stadspas-adapter sync` (``execute_sync``) on
generated records. With a pause it prints "PAUSED <pid>" and waits until the
gate file exists (or forever, for a test that kills it).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from adapter.cli.sync import execute_sync
from adapter.runtime import Runtime
from adapter.settings import settings_from_mapping
from tests.sync.records import SIMPLE_RULES, household_records


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("database_url")
    parser.add_argument("households", type=int)
    parser.add_argument("--pause-after", type=int)
    parser.add_argument("--pause-at")
    parser.add_argument("--gate")
    parser.add_argument("--today", default="2026-11-30")
    args = parser.parse_args()
    settings = settings_from_mapping({"environment": "development", "data_dir": "/tmp",
                                      "database": {"url": args.database_url}}, Path("child.yaml"))
    runtime = Runtime(settings)

    def pause() -> None:
        print(f"PAUSED {os.getpid()}", flush=True)
        while not (args.gate and Path(args.gate).exists()):
            time.sleep(0.02)

    def records():
        for count, record in enumerate(household_records(args.households), start=1):
            yield record
            if count == args.pause_after:
                pause()

    def on_stage(stage: str) -> None:
        if stage == args.pause_at:
            pause()

    import adapter.sync as engine
    from datetime import date
    today = date.fromisoformat(args.today)
    original = engine.local_today
    engine.local_today = lambda: today  # the records are built around this date
    try:
        return execute_sync(runtime, "gemeente", records(), SIMPLE_RULES, on_stage=on_stage)
    finally:
        engine.local_today = original
        runtime.close()


if __name__ == "__main__":
    sys.exit(main())
