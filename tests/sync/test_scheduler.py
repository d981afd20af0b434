"""The scheduler: one run per night across both DST nights, 02:xx refused, jobs built without starting."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from adapter.models import SyncRun, SyncStatus
from adapter.runtime import Runtime
from adapter.scheduler import (
    JOB_DEFAULTS,
    MISFIRE_GRACE_SECONDS,
    ScheduleError,
    build_jobs,
    build_scheduler,
    daily_trigger,
)
from adapter.sync import AMSTERDAM
from tests.conftest import make_settings


def _runtime(tmp_path, **schedules):
    sources = {name: {"connector": "csv", "mapping": "m.yaml", "schedule": time} for name, time in schedules.items()}
    return Runtime(make_settings(tmp_path, f"sqlite:///{tmp_path / 'a.db'}", sources=sources))


def _fire_times(trigger, start: datetime, end: datetime) -> list[datetime]:
    """What APScheduler would fire with the clock frozen at each fire time in turn."""
    fired = []
    previous = None
    now = start
    while True:
        next_fire = trigger.get_next_fire_time(previous, now)
        if next_fire is None or next_fire >= end:
            return fired
        fired.append(next_fire)
        previous = now = next_fire


@pytest.mark.parametrize("local_time", ["01:00", "01:30", "01:59", "03:00", "03:30", "23:45"])
@pytest.mark.parametrize("dst_night", ["2026-03-29", "2026-10-25"])
def test_exactly_one_run_per_night_across_the_dst_nights(local_time, dst_night):
    middle = datetime.fromisoformat(dst_night).replace(tzinfo=AMSTERDAM)
    start, end = middle - timedelta(days=3), middle + timedelta(days=3)
    fired = _fire_times(daily_trigger(local_time), start, end)
    per_day = Counter(moment.astimezone(AMSTERDAM).date() for moment in fired)
    assert len(per_day) == 6 and set(per_day.values()) == {1}
    assert {moment.astimezone(AMSTERDAM).strftime("%H:%M") for moment in fired} == {local_time}
    # Strictly increasing instants: never the same night twice.
    assert all(a < b for a, b in zip(fired, fired[1:]))


@pytest.mark.parametrize("local_time", ["02:00", "02:30", "02:59"])
def test_a_time_in_the_dst_hour_is_refused_with_an_explanation(tmp_path, local_time):
    runtime = _runtime(tmp_path, gemeente=local_time, other="01:00", third="02:15")
    with pytest.raises(ScheduleError) as caught:
        build_jobs(runtime)
    problems = caught.value.problems
    assert len(problems) == 2  # both bad sources named, the good one not
    assert any(p.startswith(f"sources.gemeente.schedule: {local_time}") for p in problems)
    assert "summer time" in str(caught.value) and "twice" in str(caught.value)


def test_the_hour_after_midnight_is_refused_because_the_cron_trigger_skips_a_night_there(tmp_path):
    # Why: the real CronTrigger at 00:30 fires on 29 March and next on 31 March.
    middle = datetime(2026, 3, 29, tzinfo=AMSTERDAM)
    fired = _fire_times(daily_trigger("00:30"), middle - timedelta(days=3), middle + timedelta(days=3))
    assert len({moment.astimezone(AMSTERDAM).date() for moment in fired}) == 5
    with pytest.raises(ScheduleError) as caught:
        build_jobs(_runtime(tmp_path, gemeente="00:30"))
    assert caught.value.problems[0].startswith("sources.gemeente.schedule: 00:30 lies between 00:00 and 00:59")


def test_jobs_one_sync_per_enabled_source_plus_rollover_retention_and_purge(tmp_path):
    runtime = _runtime(tmp_path, gemeente="01:30", avond="23:00")
    jobs = {job.job_id: job for job in build_jobs(runtime)}
    assert set(jobs) == {"sync:avond", "sync:gemeente", "rollover", "retention", "ratelimit-purge"}
    trigger = jobs["sync:gemeente"].trigger
    assert str(trigger.timezone) == "Europe/Amsterdam"
    assert {field.name: str(field) for field in trigger.fields}["hour"] == "1"
    purge_times = _fire_times(jobs["ratelimit-purge"].trigger, datetime(2026, 5, 1, tzinfo=AMSTERDAM),
                              datetime(2026, 5, 1, 23, 59, tzinfo=AMSTERDAM))
    assert len(purge_times) == 24

    scheduler = build_scheduler(runtime)  # built, never started
    assert not scheduler.running
    assert (scheduler._job_defaults["coalesce"], scheduler._job_defaults["max_instances"]) == (True, 1)
    assert scheduler._job_defaults["misfire_grace_time"] == JOB_DEFAULTS["misfire_grace_time"] >= 3600
    assert str(scheduler.timezone) == "Europe/Amsterdam"


REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_EXPORTS = REPO_ROOT / "connectors" / "samples" / "csv" / "exports"


def _demo_runtime(tmp_path, database_url, schedule: str) -> Runtime:
    source = {"connector": "csv", "mapping": str(REPO_ROOT / "mappings" / "demo-csv.yaml"), "schedule": schedule,
              "options": {"path": str(SAMPLE_EXPORTS), "file_pattern": "stadspas-*.csv", "encoding": "auto"}}
    return Runtime(make_settings(tmp_path, database_url, sources={"demo": source}))


def _first_runs(scheduler) -> dict[str, datetime | None]:
    """Each job's first run as added, before the scheduler starts: None where the trigger decides it at start."""
    return {job.id: getattr(job, "next_run_time", None) for job in scheduler.get_jobs()}


def test_a_scheduler_started_after_a_sync_time_runs_that_sync_at_once(tmp_path, sqlite_url, monkeypatch):
    """The scheduler was down (a host rebooted, a deployment) when tonight's sync was due, and is up again within
    the misfire grace: the real scheduler syncs the source at start instead of skipping the night."""
    monkeypatch.setattr("adapter.scheduler.dst_problem", lambda *_: None)  # any hour of the day the test runs at
    three_minutes_ago = (datetime.now(AMSTERDAM) - timedelta(minutes=3)).strftime("%H:%M")
    runtime = _demo_runtime(tmp_path, sqlite_url, three_minutes_ago)
    scheduler = build_scheduler(runtime, tmp_path)
    running = threading.Thread(target=scheduler.start, daemon=True)
    running.start()
    try:
        deadline = time.monotonic() + 60
        statuses: list[SyncStatus] = []
        while time.monotonic() < deadline and SyncStatus.SUCCEEDED not in statuses:
            time.sleep(0.2)
            with runtime.db.read() as session:
                statuses = list(session.execute(select(SyncRun.status).where(SyncRun.source == "demo")).scalars())
        assert statuses == [SyncStatus.SUCCEEDED]
    finally:
        scheduler.shutdown(wait=True)
        running.join(10)
        runtime.close()


def test_a_missed_sync_is_caught_up_only_within_the_grace_and_only_when_no_run_ended_since(tmp_path, sqlite_url):
    runtime = _demo_runtime(tmp_path, sqlite_url, "01:30")
    try:
        missed = datetime(2026, 5, 1, 1, 30, tzinfo=AMSTERDAM)
        at_three = _first_runs(build_scheduler(runtime, now=datetime(2026, 5, 1, 3, 0, tzinfo=AMSTERDAM)))
        assert at_three["sync:demo"] == missed
        assert at_three["rollover"] == datetime(2026, 5, 1, 1, 15, tzinfo=AMSTERDAM)  # expiring twice is harmless
        assert at_three["retention"] is None  # a Friday: last Sunday's run is days past the grace

        too_late = missed + timedelta(seconds=MISFIRE_GRACE_SECONDS + 60)
        assert _first_runs(build_scheduler(runtime, now=too_late))["sync:demo"] is None
        # The night summer time starts: 01:30 was 3 real hours before 05:45, though 4:15 on the clock.
        dst_morning = datetime(2026, 3, 29, 5, 45, tzinfo=AMSTERDAM)
        assert _first_runs(build_scheduler(runtime, now=dst_morning))["sync:demo"] == \
            datetime(2026, 3, 29, 1, 30, tzinfo=AMSTERDAM)

        with runtime.db.write() as session:  # a run that failed since (the process killed) is tried again
            session.add(SyncRun(source="demo", status=SyncStatus.FAILED, started_at=missed + timedelta(seconds=2)))
        assert _first_runs(build_scheduler(runtime, now=missed + timedelta(hours=1)))["sync:demo"] == missed
        with runtime.db.write() as session:  # one that ended since (here: refused by the guard) is not
            session.add(SyncRun(source="demo", status=SyncStatus.REFUSED, started_at=missed + timedelta(seconds=9)))
        assert _first_runs(build_scheduler(runtime, now=missed + timedelta(hours=1)))["sync:demo"] is None
    finally:
        runtime.close()


def test_a_scheduler_that_cannot_read_the_sync_history_still_starts(tmp_path, caplog):
    runtime = _demo_runtime(tmp_path, f"sqlite:///{tmp_path / 'never-migrated.db'}", "01:30")
    try:
        first_runs = _first_runs(build_scheduler(runtime, now=datetime(2026, 5, 1, 3, 0, tzinfo=AMSTERDAM)))
        assert first_runs["sync:demo"] is None  # not caught up: whether it ran cannot be known
        assert "could not read the sync history of source demo" in caplog.text
        assert "`stadspas-adapter sync demo`" in caplog.text
    finally:
        runtime.close()


@pytest.fixture
def start_scheduler_child(tmp_path):
    """Start the scheduler child; any still running when the test ends (it failed) is killed."""
    children: list[subprocess.Popen] = []

    def start(*extra: str) -> subprocess.Popen:
        child = subprocess.Popen([sys.executable, "-m", "tests.sync.scheduler_child", str(tmp_path / "var"), *extra],
                                 cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        children.append(child)
        assert child.stdout.readline() == "READY\n", child.stderr.read() if child.poll() is not None else ""
        return child

    yield start
    for child in children:
        if child.poll() is None:
            child.kill()
            child.communicate()


def test_sigterm_stops_an_idle_scheduler_with_a_line_and_exit_code_0(start_scheduler_child):
    """systemctl stop, docker stop: Python's default ended the scheduler without a word (exit -15), and as a
    container's PID 1 it ignored SIGTERM until Docker killed it."""
    child = start_scheduler_child()
    child.send_signal(signal.SIGTERM)
    _out, err = child.communicate(timeout=20)
    assert child.returncode == 0, err
    assert "stopping: no job was running" in err and "scheduler stopped" in err


def test_sigterm_lets_a_running_job_finish_and_a_second_one_stops_at_once(tmp_path, start_scheduler_child):
    gate = tmp_path / "gate"
    child = start_scheduler_child("--slow-job", str(gate))
    assert child.stdout.readline() == "STARTED\n"
    child.send_signal(signal.SIGTERM)
    time.sleep(1)
    assert child.poll() is None  # waits for the job
    gate.touch()
    out, err = child.communicate(timeout=20)
    assert child.returncode == 0, err
    assert out == "FINISHED\n"
    assert "waiting for slow to finish" in err and "scheduler stopped" in err

    gate.unlink()
    child = start_scheduler_child("--slow-job", str(gate))
    assert child.stdout.readline() == "STARTED\n"
    child.send_signal(signal.SIGTERM)
    time.sleep(1)
    child.send_signal(signal.SIGTERM)
    out, err = child.communicate(timeout=20)
    assert child.returncode == -signal.SIGTERM and out == ""


def test_an_enabled_source_without_a_schedule_is_named_at_start(tmp_path, caplog):
    sources = {"gemeente": {"connector": "csv", "mapping": "m.yaml"},
               "oud": {"connector": "csv", "mapping": "m.yaml", "enabled": False},
               "nacht": {"connector": "csv", "mapping": "m.yaml", "schedule": "04:15"}}
    runtime = Runtime(make_settings(tmp_path, f"sqlite:///{tmp_path / 'a.db'}", sources=sources))
    try:
        with caplog.at_level("WARNING", logger="adapter.scheduler"):
            scheduler = build_scheduler(runtime, now=datetime(2026, 5, 1, 12, 0, tzinfo=AMSTERDAM))
    finally:
        runtime.close()
    assert "sync:nacht" in {job.id for job in scheduler.get_jobs()}
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert warnings == ['source gemeente has no schedule, so this scheduler never syncs it; to sync it nightly set '
                        'sources.gemeente.schedule (e.g. "04:15") and restart the scheduler, or run '
                        '`stadspas-adapter sync gemeente` yourself']


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
def test_two_sources_due_at_once_sync_one_after_the_other_on_sqlite_and_side_by_side_on_postgres(
        tmp_path, database_url, monkeypatch):
    """A sync writes in one transaction, holding SQLite's one write lock to its end: the second source's sync, due
    the same minute, waited for it, and past the 60 s a write waits (a big city's first load) failed the night."""
    import adapter.scheduler

    monkeypatch.setattr("adapter.scheduler.dst_problem", lambda *_: None)  # any hour of the day the test runs at
    due = (datetime.now(AMSTERDAM) - timedelta(minutes=3)).strftime("%H:%M")
    sources = {name: {"connector": "csv", "mapping": "m.yaml", "schedule": due} for name in ("north", "south")}
    runtime = Runtime(make_settings(tmp_path, database_url, sources=sources))
    lock = threading.Lock()
    at_once, most_at_once, synced = [0], [0], []

    def a_sync_of(_runtime, source_name, _base_dir):
        def job() -> None:
            with lock:
                at_once[0] += 1
                most_at_once[0] = max(most_at_once[0], at_once[0])
            time.sleep(0.5)
            with lock:
                at_once[0] -= 1
                synced.append(source_name)
        return job

    monkeypatch.setattr(adapter.scheduler, "_sync_job", a_sync_of)
    scheduler = build_scheduler(runtime, tmp_path)
    running = threading.Thread(target=scheduler.start, daemon=True)
    running.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(synced) < 2:
            time.sleep(0.1)
    finally:
        scheduler.shutdown(wait=True)
        running.join(10)
        runtime.close()
    assert sorted(synced) == ["north", "south"]
    assert most_at_once[0] == (1 if database_url.startswith("sqlite") else 2)


def test_a_job_whose_turn_comes_after_the_stop_does_not_start(caplog):
    """On SQLite one job runs at a time: a second one due at the same minute waits in the queue, and a SIGTERM while
    the first runs must not start it once the first is done."""
    import logging

    from adapter.scheduler import _noted_while_running

    ran, running, stopping = [], set(), threading.Event()
    job = _noted_while_running("sync:south", lambda: ran.append("south"), running, stopping)
    job()
    stopping.set()
    with caplog.at_level(logging.INFO, logger="adapter.scheduler"):
        job()
    assert ran == ["south"] and running == set()
    assert "sync:south not started: the scheduler is stopping" in caplog.text


def test_a_scheduler_whose_loop_fails_to_start_says_so_instead_of_ending_as_if_stopped(tmp_path, monkeypatch):
    """The loop runs in a thread of its own: an error as it starts (adding its jobs) ended that thread alone, and the
    command returned as after a clean stop, exit code 0, with nothing scheduled."""
    from apscheduler.schedulers.blocking import BlockingScheduler

    from adapter.scheduler import run_scheduler

    def broken(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("the job store refused a job")

    monkeypatch.setattr(BlockingScheduler, "start", broken)
    runtime = _runtime(tmp_path, demo="04:15")
    try:
        with pytest.raises(RuntimeError, match="the job store refused a job"):
            run_scheduler(runtime, tmp_path)
    finally:
        runtime.close()
