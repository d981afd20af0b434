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
and then skips the next night (tests/sync/test_scheduler.py shows it). ``coalesce`` runs a job once however
many of its times were missed, ``max_instances=1`` never overlaps it, and a generous
``misfire_grace_time`` still runs a job the scheduler was a few hours late for.

The job store is in memory, so a scheduler that was not running at a job's time (a host rebooted, a
deployment, the process restarted in the middle of a sync) would know nothing of it and wait for the next
night. So at start each job is given the last time it was due within the misfire grace (``missed_run``): it
runs at once. A sync is not caught up when a run of its source ended since that time (succeeded, or refused by
the guard, which would refuse again); the roll-over and retention change nothing when run twice.

SIGTERM (``systemctl stop``, ``docker stop``) stops it as Ctrl+C does: no job starts any more, a sync already
running finishes (a second signal stops at once: an unfinished sync changes nothing), and it exits 0. Python's
default for SIGTERM ended it without a word in the log, and as PID 1 of a container it ignored SIGTERM until
Docker killed it.

``build_jobs`` is separate from starting, so tests inspect the triggers.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from adapter import grants, ratelimit, retention
from adapter.connector import ConnectorError
from adapter.key_match import KeysMismatch
from adapter.models import SyncRun, SyncStatus, utcnow
from adapter.read_ahead import SourceReadingStalled
from adapter.retention import RetentionReport
from adapter.rules import RulesError
from adapter.rules_trail import load_rules_recorded
from adapter.runtime import Runtime
from adapter.sync import AMSTERDAM, local_today, record_not_started, run_sync, said_by_the_sync
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
    source: str | None = None  # the source a sync job syncs


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
                            _sync_job(runtime, name, base_dir), daily_trigger(source.schedule), source=name))
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


def build_scheduler(runtime: Runtime, base_dir: Path | None = None, now: datetime | None = None,
                    running: set[str] | None = None, stopping: threading.Event | None = None) -> BlockingScheduler:
    """The scheduler with every job; a job missed while it was not running (``missed_run``) runs at start.
    ``running``: holds the ids of the jobs running at any moment, for the stop to name them; once ``stopping`` is
    set, a job whose turn comes does not start."""
    scheduler = BlockingScheduler(timezone=AMSTERDAM, job_defaults=JOB_DEFAULTS, executors=_executors(runtime))
    now = now or datetime.now(AMSTERDAM)
    for name in unscheduled_sources(runtime):
        log.warning("source %s has no schedule, so this scheduler never syncs it; to sync it nightly set "
                    "sources.%s.schedule (e.g. \"04:15\") and restart the scheduler, or run `stadspas-adapter "
                    "sync %s` yourself", name, name, name)
    for job in build_jobs(runtime, base_dir):
        missed = missed_run(runtime, job, now)
        # Without next_run_time APScheduler takes the trigger's next time after its start, tomorrow's.
        first_run = {"next_run_time": missed} if missed is not None else {}
        func = job.func if running is None else _noted_while_running(job.job_id, job.func, running, stopping)
        scheduler.add_job(func, job.trigger, id=job.job_id, name=job.description, replace_existing=True,
                          **first_run)
    return scheduler


def _executors(runtime: Runtime) -> dict[str, ThreadPoolExecutor]:
    """On SQLite one job at a time. A sync writes in one transaction, which holds SQLite's one write lock to its
    end: two sources scheduled at the same minute had the second wait for the first's, and a first load of a big
    city's export outlasted the 60 s a write waits for the lock, failing the second night's sync ("database is
    locked"). In turn, the second starts when the first is done (coalesced and within the misfire grace, as a
    missed time is). On PostgreSQL the syncs of different sources run side by side, as before."""
    return {"default": ThreadPoolExecutor(max_workers=1 if runtime.db.is_sqlite else _PARALLEL_JOBS)}


_PARALLEL_JOBS = 10  # APScheduler's own default


def unscheduled_sources(runtime: Runtime) -> list[str]:
    """The enabled sources without a ``schedule``: the scheduler starts without a word of them otherwise, and an
    operator who forgot the key learnt of it when the children's budgets were not there in the morning."""
    return [name for name, source in sorted(runtime.settings.sources.items())
            if source.enabled and source.schedule is None]


def _noted_while_running(job_id: str, func: Callable[[], object], running: set[str],
                         stopping: threading.Event | None = None) -> Callable[[], None]:
    def job() -> None:
        if stopping is not None and stopping.is_set():
            # Queued behind a running one (on SQLite one job runs at a time) when the stop came: it does not start.
            log.info("%s not started: the scheduler is stopping", job_id)
            return
        running.add(job_id)
        try:
            func()
        finally:
            running.discard(job_id)

    return job


def missed_run(runtime: Runtime, job: JobSpec, now: datetime) -> datetime | None:
    """The time ``job`` was last due within the misfire grace before ``now``, or None: nothing due then, or a
    sync whose source has a run that ended since that time."""
    # In UTC: arithmetic on a Europe/Amsterdam time is wall-clock arithmetic, an hour off across a DST change.
    now = now.astimezone(timezone.utc)
    window_start = now - timedelta(seconds=MISFIRE_GRACE_SECONDS)
    due = job.trigger.get_next_fire_time(None, window_start)
    if due is None or due >= now:
        return None
    while (following := job.trigger.get_next_fire_time(due, due + timedelta(seconds=1))) is not None \
            and following < now:
        due = following  # the latest time it was due (the hourly purge's), as coalesce would run
    if job.source is not None:
        try:
            with runtime.db.read() as session:
                ended_since = session.execute(
                    select(SyncRun.id).where(SyncRun.source == job.source, SyncRun.started_at >= due,
                                             SyncRun.status.in_([SyncStatus.SUCCEEDED, SyncStatus.REFUSED]))
                    .limit(1)).first()
        except SQLAlchemyError as exc:
            # The scheduler starts all the same: the sync itself reports a database still unreachable at its time.
            log.warning("could not read the sync history of source %s (%s): a sync missed before this start is not "
                        "run now; check the database, then run `stadspas-adapter sync %s` by hand if needed",
                        job.source, type(exc).__name__, job.source)
            return None
        if ended_since is not None:
            return None
    return due


def run_scheduler(runtime: Runtime, base_dir: Path | None = None) -> None:
    """Run until SIGTERM or Ctrl+C (in the main thread: it sets the SIGTERM handler)."""
    running: set[str] = set()
    stopping = threading.Event()
    scheduler = build_scheduler(runtime, base_dir, running=running, stopping=stopping)
    for job in scheduler.get_jobs():
        missed = getattr(job, "next_run_time", None)
        if missed is not None:
            log.info("scheduled %s (%s); missed at %s while the scheduler was not running: runs now", job.id,
                     job.name, missed.astimezone(AMSTERDAM).strftime("%Y-%m-%d %H:%M"))
        else:
            log.info("scheduled %s (%s)", job.id, job.name)
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    signal.signal(signal.SIGTERM, _interrupt)
    # The loop runs beside the main thread, which wakes twice a second: Python runs a signal's handler in the
    # main thread only, and the kernel may hand the signal to a job's thread while the main thread sleeps in a
    # wait with no end (none at all while no job is due), so the handler waited for the next job's time.
    failed: list[Exception] = []

    def scheduling() -> None:
        try:
            scheduler.start()
        except Exception as exc:  # raised in this process's main thread below: the command must not exit 0
            failed.append(exc)

    loop = threading.Thread(target=scheduling, name="scheduler")
    try:
        loop.start()
        while loop.is_alive():
            loop.join(0.5)
        if failed:
            raise failed[0]
    except KeyboardInterrupt:  # Ctrl+C, or SIGTERM through _interrupt
        _stop(scheduler, loop, running, stopping)
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _stop(scheduler: BlockingScheduler, loop: threading.Thread, running: set[str], stopping: threading.Event) -> None:
    """Start no job any more, let the running ones finish, and say so."""
    stopping.set()
    # A second signal while waiting ends the process at once (the operating system's default for both).
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    while loop.is_alive() and not scheduler.running:  # the signal came while the loop was starting
        loop.join(0.05)
    still_running = sorted(running)
    if still_running:
        log.warning("stopping: no job starts any more; waiting for %s to finish. A second SIGTERM or Ctrl+C stops "
                    "at once: an unfinished sync changes nothing, and the scheduler's next start within 4 hours "
                    "runs it again (or run `stadspas-adapter sync SOURCE`)", ", ".join(still_running))
    else:
        log.info("stopping: no job was running")
    if scheduler.running:
        scheduler.shutdown(wait=True)
    loop.join()
    log.info("scheduler stopped")


def rollover(runtime: Runtime) -> int:
    """Close budgets whose period ended (after the rules' grace days): what is left expires in the ledger."""
    try:
        rules = load_rules_recorded(runtime.db, runtime.settings.budgets, actor="scheduler")
    except RulesError as exc:
        log.error("rollover not run: the budget rules cannot be read, so no budget of an ended period was closed "
                  "in the ledger tonight (the counter refuses them all the same). %s The next night's roll-over "
                  "closes them once the file reads again.", exc)
        return 0
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
        except RulesError as exc:
            _not_started(runtime, source_name, exc)
            return
        try:
            # Read in a worker process (adapter.read_ahead), which the sync starts once it holds the lock.
            with read_source(runtime.settings.sources[source_name], source_name=source_name,
                             base_dir=base_dir, stall_seconds=runtime.settings.sync.read_stall_minutes * 60) as records:
                run_sync(runtime.db, runtime.vault, source_name, records, settings=runtime.settings.sync,
                         rules=rules, actor="scheduler")
        except SyncBusy as busy:
            log.warning("%s", busy)
        except Exception as exc:  # the scheduler keeps going for tomorrow
            if not said_by_the_sync(exc):  # before the run was stored or while closing it (the lock, the database)
                log.exception("sync of source %s failed", source_name)
            elif not isinstance(exc, _SAID_IN_FULL):
                # A fault of ours: the sync's line names only its class and text. Its traceback goes with it, as a
                # warning (the line above is the one ERROR of the night), for the report to the maintainers.
                log.warning("sync of source %s: where the failure above came from, for a report to the "
                            "maintainers", source_name, exc_info=True)

    return job


# Failures whose run reason says all there is to say: the source's (a connector's error, worded for the operator),
# the database's, the keys', or a reading that stalled. Their traceback would only point into our plumbing.
_SAID_IN_FULL = (ConnectorError, SQLAlchemyError, KeysMismatch, SourceReadingStalled)


def _not_started(runtime: Runtime, source_name: str, problem: RulesError) -> None:
    """Say, and store as the source's failed run, that tonight's sync did not start and what to do."""
    reason = (f"not started: the budget rules cannot be read; nothing was read or changed. {problem} Then run "
              f"`stadspas-adapter sync {source_name}`, or wait for the next night.")
    log.error("sync of source %s %s", source_name, reason)
    try:
        record_not_started(runtime.db, source_name, reason)
    except SQLAlchemyError as exc:
        log.warning("the failed sync of source %s could not be stored in its history either (%s)", source_name,
                    type(exc).__name__)
