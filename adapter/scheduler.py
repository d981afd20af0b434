"""The scheduler process: nightly syncs, the period roll-over and housekeeping.

Jobs: one sync per scheduled source (its own time), the roll-over daily at
01:15, retention weekly on Sunday 05:00, the rate-limit purge hourly. Every
load of the budget rules file notes a changed file in the audit trail
(``adapter.rules_trail``).

APScheduler 3.x cannot share a job store between processes: every gunicorn
worker that started a scheduler would run each job again. So the scheduler is
its own process (`stadspas-adapter scheduler`), started once; the API never
starts one. A second scheduler by mistake is still harmless for the syncs, which
take a per-source lock (``adapter.sync_lock``).

Times are local (Europe/Amsterdam). Times from 02:00 to 02:59 are refused: that
hour is skipped when summer time starts (last Sunday of March) and happens twice
when it ends (last Sunday of October). Times from 00:00 to 00:59 are refused
too: APScheduler 3.11's CronTrigger rolls a day over by adding the wall-clock
difference in UTC, so a daily 00:30 job fires on the night of the March change
and then skips the next night (tests/sync/test_scheduler.py shows it). ``coalesce`` runs a job once after
downtime, ``max_instances=1`` never overlaps it, and a generous
``misfire_grace_time`` still runs a sync the scheduler was a few hours late for.

``build_jobs`` is separate from starting, so tests inspect the triggers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger

from adapter import grants, ratelimit, retention
from adapter.models import utcnow
from adapter.retention import RetentionReport
from adapter.rules_trail import load_rules_recorded
from adapter.runtime import Runtime
from adapter.sync import AMSTERDAM, local_today, run_sync
from adapter.sync_lock import SyncBusy

log = logging.getLogger("adapter.scheduler")

ROLLOVER_TIME = "01:15"  # after midnight: a period that ended yesterday is closed tonight
PURGE_MINUTE = 17  # hourly, away from the top of the hour
# Weekly, Sunday morning: after the nightly syncs and the roll-over, outside 00:00-02:59, before anyone works.
RETENTION_DAY, RETENTION_TIME = "sun", "05:00"
MISFIRE_GRACE_SECONDS = 4 * 3600
JOB_DEFAULTS = {"coalesce": True, "max_instances": 1, "misfire_grace_time": MISFIRE_GRACE_SECONDS}


class ScheduleError(Exception):
    """The schedule cannot be run as configured; ``problems`` lists every reason."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        listing = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"the scheduler did not start; {len(problems)} problem(s) in the schedule:\n{listing}")


@dataclass(frozen=True)
class JobSpec:
    job_id: str
    description: str
    func: Callable[[], None]
    trigger: BaseTrigger


def dst_problem(key_path: str, local_time: str) -> str | None:
    """Why ``local_time`` ("HH:MM") cannot be used, or None."""
    if local_time.startswith("02:"):
        return (f"{key_path}: {local_time} lies between 02:00 and 03:00 Europe/Amsterdam. That hour is skipped "
                "when summer time starts (last Sunday of March) and happens twice when it ends (last Sunday of "
                "October), so the job would not run one night and run twice another. Choose a time outside it, "
                "e.g. 01:30 or 03:30.")
    if local_time.startswith("00:"):
        return (f"{key_path}: {local_time} lies between 00:00 and 00:59 Europe/Amsterdam. APScheduler's daily "
                "trigger skips that time on the night after summer time starts (it shifts the day roll-over by "
                "the clock change), so one night would have no run. Choose a time from 01:00, or 23:xx.")
    return None


def daily_trigger(local_time: str) -> CronTrigger:
    hour, minute = (int(part) for part in local_time.split(":"))
    return CronTrigger(hour=hour, minute=minute, timezone=AMSTERDAM)


def build_jobs(runtime: Runtime, base_dir: Path | None = None) -> list[JobSpec]:
    """Every job with its trigger; raise ScheduleError naming every unusable time."""
    settings = runtime.settings
    problems = []
    jobs = []
    for name, source in sorted(settings.sources.items()):
        if not source.enabled or source.schedule is None:
            continue
        problem = dst_problem(f"sources.{name}.schedule", source.schedule)
        if problem:
            problems.append(problem)
            continue
        jobs.append(JobSpec(f"sync:{name}", f"sync source {name} daily at {source.schedule}",
                            _sync_job(runtime, name, base_dir), daily_trigger(source.schedule)))
    if problems:
        raise ScheduleError(problems)
    jobs.append(JobSpec("rollover", f"expire budgets of ended periods daily at {ROLLOVER_TIME}",
                        lambda: rollover(runtime), daily_trigger(ROLLOVER_TIME)))
    hour, minute = (int(part) for part in RETENTION_TIME.split(":"))
    jobs.append(JobSpec("retention", f"remove personal data past retention weekly ({RETENTION_DAY} {RETENTION_TIME})",
                        lambda: apply_retention(runtime),
                        CronTrigger(day_of_week=RETENTION_DAY, hour=hour, minute=minute, timezone=AMSTERDAM)))
    jobs.append(JobSpec("ratelimit-purge", "drop finished rate-limit windows hourly",
                        lambda: purge_rate_counters(runtime),
                        CronTrigger(minute=PURGE_MINUTE, timezone=AMSTERDAM)))
    return jobs


def build_scheduler(runtime: Runtime, base_dir: Path | None = None) -> BlockingScheduler:
    scheduler = BlockingScheduler(timezone=AMSTERDAM, job_defaults=JOB_DEFAULTS)
    for job in build_jobs(runtime, base_dir):
        scheduler.add_job(job.func, job.trigger, id=job.job_id, name=job.description, replace_existing=True)
    return scheduler


def run_scheduler(runtime: Runtime, base_dir: Path | None = None) -> None:
    scheduler = build_scheduler(runtime, base_dir)
    for job in scheduler.get_jobs():
        log.info("scheduled %s (%s)", job.id, job.name)
    scheduler.start()


def rollover(runtime: Runtime) -> int:
    """Close budgets whose period ended (after the rules' grace days): what is left expires in the ledger."""
    rules = load_rules_recorded(runtime.db, runtime.settings.budgets, actor="scheduler")
    with runtime.db.write() as session:
        expired = grants.expire_ended(session, local_today(), rules.expiry_grace_days, actor="rollover")
    log.info("rollover: %d budget(s) expired", expired)
    return expired


def apply_retention(runtime: Runtime) -> RetentionReport:
    """Pseudonymise cardholders past ``retention.months`` (audited by ``retention.apply``)."""
    report = retention.apply(runtime.db, runtime.settings, utcnow(), actor="scheduler")
    log.info("retention: %d cardholder(s), %d pass(es), %d household(s) pseudonymised",
             report.cardholders, report.passes, report.households)
    return report


def purge_rate_counters(runtime: Runtime) -> int:
    return ratelimit.purge_before(runtime.db, int(time.time()) - 3600)


def _sync_job(runtime: Runtime, source_name: str, base_dir: Path | None) -> Callable[[], None]:
    def job() -> None:
        # Imported here: the connectors layer is loaded only by a process that syncs.
        from adapter.sources import read_source

        try:
            rules = load_rules_recorded(runtime.db, runtime.settings.budgets, actor="scheduler")
            # Read in a worker process (adapter.read_ahead), which the sync starts once it holds the lock.
            with read_source(runtime.settings.sources[source_name], source_name=source_name,
                             base_dir=base_dir) as records:
                run_sync(runtime.db, runtime.vault, source_name, records, settings=runtime.settings.sync,
                         rules=rules, actor="scheduler")
        except SyncBusy as busy:
            log.warning("%s", busy)
        except Exception:  # logged and recorded on the run; the scheduler keeps going for tomorrow
            log.exception("sync of source %s failed", source_name)

    return job
