"""The scheduler: one run per night across both DST nights, 02:xx refused, jobs built without starting."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

import pytest

from adapter.runtime import Runtime
from adapter.scheduler import JOB_DEFAULTS, ScheduleError, build_jobs, build_scheduler, daily_trigger
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
