"""The sync engine: one source's records -> households, cardholders, passes and budgets.

A run goes through four steps:

1. **Lock.** One run per source at a time (``adapter.sync_lock``); the run row is
   written with the lock, so the history shows who is running.
2. **Plan.** Read every record (the connector and mapping live elsewhere: the
   engine takes any ``Iterable[CardholderRecord | RejectedRecord]``), compare it
   with the database in bulk (``adapter.sync_plan``). Nothing is written yet.
3. **Guard.** An empty source, a truncated export (fewer rows than
   ``sync.min_row_share`` of the last good run) or a run that would take more
   than ``sync.max_change_share`` of the known passes out of use is *refused*:
   the previous data stays in force until a person looks and reruns with ``force``.
4. **Apply.** All changes, the automatic grants, the record outcomes, the run's
   counts and the lock release commit in ONE write transaction. A process killed
   at any point leaves the data as before the run or as after it; a rerun then
   gives the same state as one clean run. A dry run applies the same way and
   rolls back, so its counts (budgets included) are exactly what a run would do.

Absence is not deletion: a cardholder or pass missing from the source is marked
missing and deactivated only after ``sync.grace_nights``; nothing is deleted.
"""

from __future__ import annotations

import contextlib
import gc
import heapq
import itertools
import logging
import sqlite3
import threading
import time
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from adapter import audit, grants, sync_lock
from adapter.holder_facts import HolderFactsById
from adapter.bulk import index_built_after, insert_rows, insert_tuples, reserve_ids
from adapter.crypto import Vault
from adapter.db import Database
from adapter.first_load import keys_checked_at_end
from adapter.key_match import KeysMismatch, stored_keys_problem
from adapter.models import (
    Budget,
    Cardholder,
    HolderStatus,
    Household,
    LedgerEntry,
    Pass,
    PassState,
    Redemption,
    Reversal,
    SyncRecordOutcome,
    SyncRun,
    SyncStatus,
    utcnow,
)
from adapter.plan_writes import DaysByOrdinal, ordinal
from adapter.read_ahead import ReadAhead
from adapter.records import CardholderRecord, RejectedRecord
from adapter.sealing import SEALED_COLUMNS, SealedColumns, Sealer
from adapter.redaction import redact
from adapter.rules import BudgetRules
from adapter.settings import SyncSettings
from adapter.spool import Spool
from adapter.sync_plan import CREATED, REJECTED, UNCHANGED, UPDATED, Plan, Planner
from adapter.sync_snapshot import Snapshot, load_snapshot

log = logging.getLogger("adapter.sync")
_T = TypeVar("_T")

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
BATCH_SIZE = 1000  # rows an UPDATE statement takes at once (new rows go in as one insert: see _streamed)
_ID_CHUNK = 500
# Outcomes kept per run: every rejected record up to this many (a broken export is refused anyway).
MAX_REJECTED_KEPT = 10_000
PROGRESS_EVERY = 1000

Progress = Callable[[int], None]
StageHook = Callable[[str], None]


@dataclass(frozen=True)
class SyncResult:
    run_id: int
    source: str
    status: SyncStatus
    reason: str | None
    records_read: int
    created: int
    updated: int
    unchanged: int
    rejected: int
    missing: int
    deactivated: int
    budgets_granted: int
    duration_seconds: float
    forced: bool = False
    samples: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    rejected_sample: list[tuple[str, str]] = field(default_factory=list)
    # (stage, seconds) of each stage the run went through, in order (see _StageClock); a run that wrote ends with
    # its commit (_through_commit).
    stage_seconds: tuple[tuple[str, float], ...] = ()

    @property
    def ok(self) -> bool:
        return self.status in (SyncStatus.SUCCEEDED, SyncStatus.DRY_RUN)

    def summary(self) -> str:
        stages = ", ".join(f"{stage} {seconds:.2f}s" for stage, seconds in self.stage_seconds)
        line = (f"sync {self.source} run {self.run_id}: {self.status.value} in {self.duration_seconds:.1f}s"
                f"{f' ({stages})' if stages else ''}; "
                f"read {self.records_read}, created {self.created}, updated {self.updated}, "
                f"unchanged {self.unchanged}, rejected {self.rejected}, missing {self.missing}, "
                f"deactivated {self.deactivated}, budgets granted {self.budgets_granted}")
        if self.forced:
            line += " (forced)"
        if self.reason:
            line += f". {self.reason}"
        return line


@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    """Let the cyclic garbage collector run less often while a sync builds its snapshot and plan.

    A sync allocates a few small objects per row and keeps them to the end, none of them in cycles;
    with Python's default thresholds the collector re-scans that growing heap over and over, about
    8% of a sync, and a full collection walks all of it (see SYNC_FULL_COLLECTION_AFTER). The scheduler runs syncs in its own long-lived process, on several threads: the
    first sync to start raises the thresholds and the last one to finish restores them.
    """
    global _syncs_running, _threshold_before
    with _threshold_lock:
        if _syncs_running == 0:
            _threshold_before = gc.get_threshold()
            gc.set_threshold(SYNC_GC_THRESHOLD, _threshold_before[1], SYNC_FULL_COLLECTION_AFTER)
        _syncs_running += 1
    try:
        yield
    finally:
        with _threshold_lock:
            _syncs_running -= 1
            if _syncs_running == 0:
                gc.set_threshold(*_threshold_before)


_threshold_lock = threading.Lock()
_syncs_running = 0
_threshold_before = gc.get_threshold()
SYNC_GC_THRESHOLD = 50_000  # allocations between young-generation collections (Python's default: 700)
# Middle-generation collections between full ones (Python's default: 10). A full collection walks every
# object the sync holds, for cycles it does not make. With the default, a first sync of a million rows ran
# one, 2.0 s of 221 s (it was about 5 s while the plan still held every plaintext record). Young cycles are
# still collected; old ones wait for the sync's end.
SYNC_FULL_COLLECTION_AFTER = 1_000_000


def local_today() -> date:
    return datetime.now(AMSTERDAM).date()


def run_sync(db: Database, vault: Vault, source: str, records: Iterable[CardholderRecord | RejectedRecord], *,
             settings: SyncSettings, rules: BudgetRules | None = None, today: date | None = None,
             dry_run: bool = False, force: bool = False, actor: str = "scheduler",
             progress: Progress | None = None, on_stage: StageHook | None = None) -> SyncResult:
    """Run one sync of ``source``; raises ``sync_lock.SyncBusy`` when another run holds the source."""
    today = today or local_today()
    started = time.perf_counter()
    stage = _StageClock(started, on_stage)
    holder = sync_lock.this_holder()
    held = sync_lock.process_lock(db, source)  # freed by the server or the kernel if this process dies
    if held is not None and not held.try_acquire():
        raise _busy_from_row(db, source)
    try:
        run_id = _lock_and_open_run(db, source, holder, exclusive_proven=held is not None)
        try:
            with fewer_collections():
                return _run_locked(db, vault, source, records, run_id, holder, settings, rules, today, dry_run,
                                   force, actor, progress, stage)
        except BaseException as exc:
            _close_failed(db, source, holder, run_id, exc)
            raise
    finally:
        if held is not None:
            held.release()


def _run_locked(db, vault, source, records, run_id, holder, settings, rules, today, dry_run, force,  # type: ignore[no-untyped-def]
                actor, progress, stage: _StageClock) -> SyncResult:
    stage("reading")
    with db.read() as session:
        key_changed = stored_keys_problem(session, vault, source)
    if key_changed and not force:  # a forced dry run goes on, to show what the forced run would do, and writes nothing
        raise KeysMismatch(key_changed)
    if isinstance(records, ReadAhead):
        # Its worker reads the source from now on, beside the snapshot's loading below: only once the run
        # holds the source's lock, so that a run that finds the source busy never contacts it. On a first
        # load it computes each record's content hash too (adapter.record_digests), on its own core: there the
        # planner's core is as full as the worker's (every line is new), while on a nightly re-sync the
        # reading is the slower one, and the keyed hashes computed there made an unchanged night 2 s slower
        # (10 s) on our bench machine.
        records.start(digest_with=vault.hashes if _nothing_stored(db, source) else None)
        lines: Iterable[tuple[CardholderRecord | RejectedRecord, str | None]] = records.digested()
    else:
        lines = ((record, None) for record in records)
    with db.read() as session:
        snapshot = load_snapshot(session, source)
    with Sealer(vault) as sealer, contextlib.ExitStack() as plan_kept:
        with Planner(snapshot, vault, sealer) as planner:
            _feed(planner, _counted(lines, progress))
            stage("planning")
            plan = plan_kept.enter_context(planner.finish(today, settings.grace_nights))
        # The last records still in plain text leave this process now (sealed, or encrypted to wait for a
        # worker), so none is held here while the guard judges and the apply writes.
        sealer.finish()
        refusal = guard(plan, settings)
        if key_changed:  # forced past it (see above): the forced run's audit entry names it too
            refusal = f"{key_changed}; {refusal}" if refusal else key_changed
        if refusal and not (force and not dry_run):
            status = SyncStatus.DRY_RUN if dry_run else SyncStatus.REFUSED
            return _close_without_changes(db, source, holder, run_id, plan, status, refusal, stage)
        stage("applying")
        if dry_run:
            budgets_granted = _dry_apply(db, vault, snapshot, plan, sealer, rules, today, stage)
            return _close_without_changes(db, source, holder, run_id, plan, SyncStatus.DRY_RUN, refusal, stage,
                                          budgets_granted=budgets_granted)
        with db.write() as session:
            budgets_granted = _apply(session, vault, snapshot, plan, sealer, rules, today, stage)
            if refusal:
                audit.record(session, actor, "sync.forced", f"sync_run:{run_id}", source=source, refusal=refusal)
            # The result (stored with the run, in this transaction) takes the stages' times up to here.
            result = _result(run_id, source, SyncStatus.SUCCEEDED, f"forced past: {refusal}" if refusal else None,
                             plan, budgets_granted, stage, forced=bool(refusal))
            stage("committing")
            _store_outcomes(session, run_id, plan)
            _finish_run(session, result)
            sync_lock.release(session, source, holder)
    # What the person at the terminal and the log see takes the commit too, which the stored run cannot: on
    # SQLite it copies the whole write-ahead log into the database and syncs both to disk, 2 s of a first sync
    # of 200,000 cardholders on our bench machine, which the summary left out.
    result = _through_commit(result, stage)
    log.info(result.summary())
    return result


def _nothing_stored(db: Database, source: str) -> bool:
    """Whether no cardholder of ``source`` is stored yet: the run is the source's first load."""
    with db.read() as session:
        return session.execute(select(Cardholder.id).where(Cardholder.source == source).limit(1)).first() is None


def guard(plan: Plan, settings: SyncSettings) -> str | None:
    """Why this run must not be applied, or None. Checked before anything changes."""
    advice = " The previous data stays in force. Check the source; if the change is real, rerun with --force."
    if plan.records_read == 0:
        return ("the source returned no records; an empty export is taken for a failure, "
                "not for every cardholder leaving." + advice)
    rejected = plan.counts[REJECTED]
    if not plan.known_passes and rejected > settings.max_change_share * plan.records_read:
        # A first load has no known passes to weigh its changes against, so its lines are: a mapping that does
        # not fit the export (a renamed column's format, a date written otherwise) rejects most or all of them,
        # and the run "succeeded" with a fraction of the city's children, or none, and no word of it in red.
        return (f"this first load would reject {rejected} of the {plan.records_read} records read: more than the "
                f"{settings.max_change_share:.0%} allowed (sync.max_change_share). Nothing was stored. "
                "`stadspas-adapter sync show RUN` lists each rejected record's reason: when most give the same "
                "one, the mapping does not fit the export; fix it and run again. To load the records that were "
                "accepted all the same, rerun with --force.")
    last = plan.last_good_records
    if last and plan.records_read < settings.min_row_share * last:
        return (f"the source returned {plan.records_read} records, fewer than {settings.min_row_share:.0%} of "
                f"the {last} of the last successful run: the export looks truncated." + advice)
    changes = plan.disruptive_changes
    counted_once = (f", {plan.rejected_absent} of them lines of those absent passes, counted once"
                    if plan.rejected_absent else "")
    if plan.known_passes and changes > settings.max_change_share * plan.known_passes:
        return (f"this run would take {changes} of {plan.known_passes} known passes out of use or reject them "
                f"({plan.passes_newly_absent} newly absent, {plan.passes_newly_blocked} newly blocked, "
                f"{plan.counts[REJECTED]} records rejected{counted_once}): more than the "
                f"{settings.max_change_share:.0%} allowed (sync.max_change_share). Passes deactivated tonight after "
                "their grace are not counted: an applied run accepted their absence." + advice)
    return None


# ---------------------------------------------------------------- lock and run bookkeeping

def _busy_from_row(db: Database, source: str, wait_seconds: float = 3.0) -> sync_lock.SyncBusy:
    # The winner takes its process lock a moment before it writes its lock row; wait
    # briefly for that row so the message can name the holder instead of "starting up".
    deadline = time.monotonic() + wait_seconds
    while True:
        with db.read() as session:
            row = sync_lock.current_lock(session, source)
        if row is not None:
            return sync_lock.SyncBusy(source, row.holder, row.acquired_at, row.run_id)
        if time.monotonic() >= deadline:
            return sync_lock.SyncBusy(source, "another process (starting up)", None, None)
        time.sleep(0.05)


def _lock_and_open_run(db: Database, source: str, holder: str, *, exclusive_proven: bool) -> int:
    with db.write() as session:
        stale = sync_lock.take(session, source, holder, exclusive_proven=exclusive_proven)
        if stale is not None and stale.run_id is not None:
            session.execute(
                update(SyncRun).where(SyncRun.id == stale.run_id, SyncRun.status == SyncStatus.RUNNING)
                .values(status=SyncStatus.FAILED, finished_at=utcnow(),
                        reason=f"interrupted: {stale.holder} ended without finishing; none of its changes "
                               "were applied (they commit all at once)")
                .execution_options(synchronize_session=False))
        run = SyncRun(source=source, holder=holder, status=SyncStatus.RUNNING, started_at=utcnow())
        session.add(run)
        session.flush()
        session.execute(update(sync_lock.SyncLock).where(sync_lock.SyncLock.source == source)
                        .values(run_id=run.id).execution_options(synchronize_session=False))
        return run.id


def _close_without_changes(db, source, holder, run_id, plan, status, reason, clock,  # type: ignore[no-untyped-def]
                           budgets_granted: int = 0) -> SyncResult:
    result = _result(run_id, source, status, reason, plan, budgets_granted, clock)
    with db.write() as session:
        _store_outcomes(session, run_id, plan)
        _finish_run(session, result)
        sync_lock.release(session, source, holder)
    (log.warning if status == SyncStatus.REFUSED else log.info)(result.summary())
    return result


def record_not_started(db: Database, source: str, reason: str) -> int:
    """Store a run that could not start (the scheduler found the budget rules unreadable) as failed, with why:
    without it the history and the dashboard showed the night before's success as the source's last word."""
    now = utcnow()
    with db.write() as session:
        run = SyncRun(source=source, holder=sync_lock.this_holder(), status=SyncStatus.FAILED, started_at=now,
                      finished_at=now, reason=reason)
        session.add(run)
        session.flush()
        return run.id


def _close_failed(db: Database, source: str, holder: str, run_id: int, exc: BaseException) -> None:
    reason = failure_reason(exc)
    try:
        with db.write() as session:
            session.execute(update(SyncRun).where(SyncRun.id == run_id)
                            .values(status=SyncStatus.FAILED, finished_at=utcnow(), reason=reason)
                            .execution_options(synchronize_session=False))
            sync_lock.release(session, source, holder)
    finally:
        log.error("sync %s run %s %s", source, run_id, reason)
        # The run's one error line and its stored reason say it all: a caller that keeps going (the scheduler)
        # need not say it again, with a traceback, under a second ERROR that an operator's alerting counts twice.
        with contextlib.suppress(AttributeError, TypeError):  # an exception class that takes no attributes
            setattr(exc, _SAID_BY_THE_SYNC, True)


_SAID_BY_THE_SYNC = "adapter_sync_failure_said"


def said_by_the_sync(exc: BaseException) -> bool:
    """Whether ``exc`` ended a run whose failure the sync has logged in its one line (and stored on the run, unless
    that write failed too: then the caller gets the database's error instead of ``exc``)."""
    return getattr(exc, _SAID_BY_THE_SYNC, False) is True


def failure_reason(exc: BaseException) -> str:
    """What a failed run's record and log line say: the failure, never a record's values.

    Connectors word their errors without values. A database error does not: PostgreSQL's DETAIL
    quotes a duplicate key (a pass number) or a whole failing row, so only its class, SQLSTATE and
    constraint are kept.
    """
    if isinstance(exc, DBAPIError):
        driver_error = exc.orig
        if isinstance(driver_error, sqlite3.Error):
            # SQLite's messages name the constraint or the condition ("database is locked"), never a value.
            return redact(f"failed: the database refused the change ({type(exc).__name__}: {driver_error}); "
                          "nothing was written. Run the sync again; if it fails the same way, report this line")
        diagnostics = getattr(driver_error, "diag", None)
        named = [f"SQLSTATE {code}" for code in [getattr(driver_error, "sqlstate", None)] if code]
        named += [f"constraint {name}" for name in [getattr(diagnostics, "constraint_name", None)] if name]
        return (f"failed: the database refused the change ({type(exc).__name__}"
                f"{': ' + ', '.join(named) if named else ''}); nothing was written. The database's own message"
                " is left out because it can quote a cardholder's data: run the sync again, and if it fails the"
                " same way, report this line to the maintainers")
    return redact(f"failed: {type(exc).__name__}: {exc}")[:2000]


class _StageClock:
    """The stage hook the run calls as it enters each stage ("reading", "planning", "applying", "granting",
    "committing"): passes the name on to the caller's hook and notes when each began, so that the run's
    summary says where its time went (a slow source shows in the reading, a slow database in the rest)."""

    def __init__(self, started: float, on_stage: StageHook | None):
        self.started = started
        self._on_stage = on_stage
        self._entered: list[tuple[str, float]] = [("starting", started)]

    def __call__(self, name: str) -> None:
        self._entered.append((name, time.perf_counter()))
        if self._on_stage is not None:
            self._on_stage(name)

    def so_far(self) -> tuple[float, tuple[tuple[str, float], ...]]:
        """The run's seconds up to now, and each stage entered so far with its time up to the next one (the
        last: up to now), in order; together they are the run's."""
        now = time.perf_counter()
        ends = [at for _name, at in self._entered[1:]] + [now]
        return now - self.started, tuple((name, end - began) for (name, began), end in zip(self._entered, ends))


def _result(run_id, source, status, reason, plan: Plan, budgets_granted, clock: _StageClock,  # type: ignore[no-untyped-def]
            forced=False) -> SyncResult:
    duration, stages = clock.so_far()
    return SyncResult(
        run_id=run_id, source=source, status=status, reason=reason, records_read=plan.records_read,
        created=plan.counts[CREATED], updated=plan.counts[UPDATED], unchanged=plan.counts[UNCHANGED],
        rejected=plan.counts[REJECTED], missing=len(plan.passes_missing), deactivated=len(plan.passes_deactivated),
        budgets_granted=budgets_granted, duration_seconds=duration, forced=forced, stage_seconds=stages,
        samples=plan.samples, rejected_sample=plan.rejected[:20])


def _through_commit(result: SyncResult, clock: _StageClock) -> SyncResult:
    """``result`` with its duration and stages up to now: the last stage, "committing", ends when the commit
    and the sealer's shutdown did."""
    duration, stages = clock.so_far()
    return replace(result, duration_seconds=duration, stage_seconds=stages)


def _finish_run(session: Session, result: SyncResult) -> None:
    session.execute(update(SyncRun).where(SyncRun.id == result.run_id).values(
        status=result.status, finished_at=utcnow(), reason=result.reason, records_read=result.records_read,
        created=result.created, updated=result.updated, unchanged=result.unchanged, rejected=result.rejected,
        missing=result.missing, deactivated=result.deactivated, budgets_granted=result.budgets_granted,
        forced=result.forced).execution_options(synchronize_session=False))


def _store_outcomes(session: Session, run_id: int, plan: Plan) -> None:
    rows = [{"record_key": key[:200], "outcome": REJECTED, "reason": reason}
            for key, reason in plan.rejected[:MAX_REJECTED_KEPT]]
    for outcome, sample in plan.samples.items():
        rows.extend({"record_key": key[:200], "outcome": outcome, "reason": None} for key, _detail in sample)
    insert_rows(session, SyncRecordOutcome.__table__, rows, {"run_id": run_id})


def _feed(planner: Planner, lines: Iterable[tuple[CardholderRecord | RejectedRecord, str | None]]) -> None:
    # In a function of its own, so that no loop variable keeps the last record once reading is done.
    for record, content_hash in lines:
        planner.feed(record, content_hash)


def _counted(records: Iterable[_T], progress: Progress | None) -> Iterator[_T]:
    if progress is None:
        yield from records
        return
    count = 0
    for record in records:
        yield record
        count += 1
        if count % PROGRESS_EVERY == 0:
            progress(count)
    progress(count)


# ---------------------------------------------------------------- apply

class _RollBack(Exception):
    pass


def _dry_apply(db, vault, snapshot, plan, sealer, rules, today, stage) -> int:  # type: ignore[no-untyped-def]
    granted = 0
    try:
        with db.write() as session:
            granted = _apply(session, vault, snapshot, plan, sealer, rules, today, stage, dry_run=True)
            raise _RollBack
    except _RollBack:
        pass
    return granted


def _apply(session: Session, vault: Vault, snapshot: Snapshot, plan: Plan, sealer: Sealer,
           rules: BudgetRules | None, today: date, stage: StageHook, dry_run: bool = False) -> int:
    """Write the plan and the grants in the caller's transaction; return the number of budgets opened or topped up.
    ``dry_run``: the caller rolls the transaction back instead of committing it."""
    # A municipality's first load (every table still empty) has its keys checked once at the end.
    with keys_checked_at_end(session, _LOADED_TABLES, rows_coming=len(plan.holders),
                             indexes_built_after=_INDEXES_BUILT_AFTER, unique_built_after=_UNIQUE_BUILT_AFTER,
                             will_commit=not dry_run) as checked_at_end:
        return _write_and_grant(session, vault, snapshot, plan, sealer, rules, today, stage, checked_at_end)


def _write_and_grant(session: Session, vault: Vault, snapshot: Snapshot, plan: Plan, sealer: Sealer,
                     rules: BudgetRules | None, today: date, stage: StageHook, checked_at_end: bool = False) -> int:
    """``checked_at_end``: the keys among the loaded tables are checked when the load ends, not row by row
    (``keys_checked_at_end``), which it does only when every one of those tables was empty, under a lock."""
    # Then the passes may name cardholders not written yet, so they go in first, while the sealer's workers
    # finish the cardholders' sealed columns (see adapter.sealing). Into empty tables no stored cardholder is
    # re-keyed, whose passes would need its row id from the cardholders' write.
    holders_last = checked_at_end and not snapshot.holders
    now = utcnow()
    source = snapshot.source
    # New households take ids reserved before their insert, by the number of it: nothing is read back, and
    # no table of every household key and id is built (a first sync writes hundreds of thousands). Into
    # empty tables this transaction holds locked (checked_at_end), each run is taken in one move.
    household_ids: Sequence[int] = ()
    if plan.new_households:
        household_ids = reserve_ids(session, Household.__table__, len(plan.new_households), alone=checked_at_end)
        insert_tuples(session, Household.__table__, ("id", "source_key"), zip(household_ids, plan.new_households),
                      {"source": source, "created_at": now, "updated_at": now})
    holder_ids = _StoredIds(snapshot)
    new_ids = reserve_ids(session, Cardholder.__table__, plan.holders.new, alone=checked_at_end)
    # What the grants will judge the cardholders written by, gathered as they are written.
    facts = HolderFactsById(new_ids)
    if holders_last:
        passes_changed_for = _write_passes(session, snapshot, plan, new_ids, holder_ids, facts, now,
                                           alone=checked_at_end)
    # The BSN index takes a first sync's entries in random order: built once after the rows, not row by row.
    with index_built_after(session, _BSN_INDEX, rows_coming=len(plan.holders)):
        written = _write_holders(session, snapshot, plan, sealer, household_ids, new_ids, facts, now)
    for key, holder_id in written.rekeyed:
        holder_ids[key] = holder_id
        # No source keys in the trail (retention cannot scrub it): the row id names the child.
        audit.record(session, f"sync:{source}", "cardholder.rekeyed", f"cardholder:{holder_id}",
                     source=source, reason="same BSN under a new cardholder id; budgets and ledger kept")
    if not holders_last:
        passes_changed_for = _write_passes(session, snapshot, plan, new_ids, holder_ids, facts, now,
                                           alone=checked_at_end)
    replaced_for = _write_replacements(session, plan, now)
    _write_absences(session, plan, today, now)
    stage("granting")
    if rules is None or not rules.rules:
        # Nothing judges the children this run changed: the next run with rules judges every one.
        grants.forget_judgement(session, source)
        return 0
    # Judged again besides (or, under new rules or periods, with) the rest: every child written, new ones
    # included, and every child whose passes changed or were replaced.
    changed = itertools.chain(written.new_ids, written.existing_ids, passes_changed_for, replaced_for)
    summary = grants.grant_budgets(
        session, vault, rules, today, source=source, actor=f"sync:{source}",
        written=written.facts, active_holders=_active_after(snapshot, plan, written), changed=changed,
        no_budgets_yet=checked_at_end)
    return summary.budgets_opened + summary.budgets_topped_up


# The tables a first load fills, and the counter's two, which it leaves empty: every ledger entry names a
# redemption and a reversal (as NULL), and PostgreSQL checks those two keys on each of a first sync's 370,000
# entries all the same (2.0 s for the entries' insert with them, 1.3 s without, measured on this schema).
_LOADED_TABLES = [Household.__table__, Cardholder.__table__, Pass.__table__, Budget.__table__,
                  LedgerEntry.__table__, Redemption.__table__, Reversal.__table__]
_BSN_INDEX = next(index for index in Cardholder.__table__.indexes if list(index.columns.keys()) == ["bsn_index"])
# Indexes the apply never reads, built once after a first load on PostgreSQL (see keys_checked_at_end). The
# others stay: the grants look up passes and (but for a first load, see below) budgets by cardholder, and the
# unique ones but the budgets' (_UNIQUE_BUILT_AFTER) refuse a duplicate as the row comes in.
_INDEXES_BUILT_AFTER = [_BSN_INDEX, *(index for table in (Cardholder.__table__, LedgerEntry.__table__)
                                      for index in table.indexes
                                      if index.name in ("ix_cardholders_household_id", "ix_ledger_entries_budget",
                                                        "ix_ledger_entries_created_at"))]
# Unique constraints added again after a first load on PostgreSQL, with every row checked then (see
# keys_checked_at_end). The budgets' (child, rule, period): kept up row by row, the server took 1.13-1.18 s to
# copy a first sync's 370,000 budgets; without it 0.70-0.72 s, and 0.17-0.20 s to add it afterwards. Nothing
# reads it meanwhile: the grants know no child has a budget yet (grant_budgets' no_budgets_yet). The passes'
# unique number stays: the replacements look passes up by it.
_UNIQUE_BUILT_AFTER = [next(constraint for constraint in Budget.__table__.constraints
                            if constraint.name == "uq_budgets_child_rule_period")]


class _StoredIds(dict):
    """Cardholder key -> row id: the re-keyed ones as entries, the stored ones as the snapshot read them,
    looked up when asked (most nights few are). New cardholders are found by number, see _write_passes."""

    def __init__(self, snapshot: Snapshot):
        super().__init__()
        self._holders = snapshot.holders

    def __missing__(self, key: str) -> int:
        return self._holders[key].id


@dataclass
class _WrittenHolders:
    """What the apply needs to know of the cardholders written, gathered in the one pass over the plan's writes."""

    # The row ids of the new cardholders, by the number of their insert (``PassWrite.holder_new``): taken
    # before the insert, one unbroken run as a rule, so a range and not a table of every new key.
    new_ids: Sequence[int]
    # The birth dates and child flags of the cardholders whose personal fields were written (new or changed),
    # and on a source's first load the passes of the new ones (made by the caller, see _write_passes).
    facts: HolderFactsById
    rekeyed: list[tuple[str, int]] = field(default_factory=list)  # (new key, row id) of each re-keyed child
    existing_ids: list[int] = field(default_factory=list)  # the row ids of the cardholders updated


def _write_holders(session: Session, snapshot: Snapshot, plan: Plan, sealer: Sealer, household_ids: Sequence[int],
                   new_ids: Sequence[int], facts: HolderFactsById, now: datetime) -> _WrittenHolders:
    """Insert and update cardholders, their personal columns as the sealer hands them back; their birth dates
    and child flags go to ``facts``."""
    table = Cardholder.__table__
    # New cardholders go in as plain tuples (a first sync inserts every one): the id (``new_ids``, taken
    # before the insert, so nothing is read back: a first sync would read every key it just wrote), the
    # household, the hash, the key, then the sealed personal columns.
    new_columns = ["id", "household_id", "content_hash", "source_key", *SEALED_COLUMNS]
    written = _WrittenHolders(new_ids=new_ids, facts=facts)
    active = {"status": HolderStatus.ACTIVE, "missing_since": None, "deactivated_at": None, "updated_at": now}
    sealed = sealer.sealed()

    def as_row(values: tuple) -> dict:
        holder_id, household_id, content_hash, sealed, *personal, source_key = values
        row = {"household_id": household_id, "content_hash": content_hash, **active, "_id": holder_id}
        if sealed:
            row.update(zip(SEALED_COLUMNS, personal))
        if source_key is not None:
            row["source_key"] = source_key
        return row

    with _Updates(table, as_row) as changed, _Updates(table, as_row) as rekeyed, _Updates(table, as_row) as back:

        def new_rows() -> Iterator[tuple]:
            # Every new row goes into one insert, made while the plan is read (see _streamed); the updates
            # wait in their spools until it is done.
            reserved = iter(new_ids)
            for write in plan.holders:
                household_id = write.household_id if write.household_new is None else household_ids[write.household_new]
                personal: tuple = _next_sealed(sealed) if write.sealed else (None, None, None)
                if write.existing_id is None:
                    written.facts.add_new(write.birth_date, personal[_IS_CHILD])  # a new cardholder is always sealed
                    yield (next(reserved), household_id, write.content_hash, write.key, *personal)
                    continue
                written.existing_ids.append(write.existing_id)
                if write.sealed:
                    written.facts.add_changed(write.existing_id, write.birth_date, personal[_IS_CHILD])
                row = (write.existing_id, household_id, write.content_hash, write.sealed, *personal)
                if write.previous_key is not None:
                    written.rekeyed.append((write.key, write.existing_id))
                    rekeyed.add((*row, write.key))
                else:
                    (changed if write.sealed else back).add((*row, None))

        _streamed(session, table, new_columns, new_rows(), {**active, "source": snapshot.source, "created_at": now})
        for updates in (changed, rekeyed, back):
            updates.apply(session)
    if next(sealed, None) is not None:
        raise _SealedOutOfStep("the sealer holds more sealed records than the plan has writes for")
    return written


def _streamed(session: Session, table, columns: Sequence[str], rows: Iterator[tuple],  # type: ignore[no-untyped-def]
              constants: dict[str, object]) -> None:
    """Insert ``rows`` as one statement, however many, made as they are inserted. On PostgreSQL that is one
    COPY: the server stores each row while this process reads and makes the next ones, instead of the two
    taking turns batch by batch (on a first sync of 200,000 cardholders, the server's two seconds of
    inserting the cardholders and its one of the passes had this process wait). Nothing may run on the
    connection meanwhile: the updates the plan holds wait (``_Updates``)."""
    first = next(rows, None)
    if first is not None:
        insert_tuples(session, table, columns, itertools.chain((first,), rows), constants)


class _Updates:
    """Updates waiting, on disk, for the insert of the new rows to end (see _streamed): a night on which every
    row changed has as many as a first sync has inserts. Each is kept as a tuple of plain values, which
    ``as_row`` turns into the update's parameters (with the row's id as ``_id``)."""

    def __init__(self, table, as_row: Callable[[tuple], dict]):  # type: ignore[no-untyped-def]
        self._table = table
        self._as_row = as_row
        self._spool = Spool(prefix="stadspas-updates-")

    def __enter__(self) -> _Updates:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._spool.close()

    def add(self, values: tuple) -> None:
        self._spool.append(values)

    def apply(self, session: Session) -> None:
        batch: list[dict] = []
        for values in self._spool:
            batch.append(self._as_row(values))
            if len(batch) >= BATCH_SIZE:
                _update_by_id(session, self._table, batch)
                batch = []
        _update_by_id(session, self._table, batch)


class _SealedOutOfStep(RuntimeError):
    """The sealed columns and the plan's writes did not pair up one to one. Never expected: refusing the
    run is better than writing one child's encrypted identity into another child's row."""


def _next_sealed(sealed: Iterator[SealedColumns]) -> SealedColumns:
    columns = next(sealed, None)
    if columns is None:
        raise _SealedOutOfStep("the plan has more writes to seal than the sealer was given")
    return columns


_IS_CHILD = SEALED_COLUMNS.index("is_child")
_NEW_PASS_COLUMNS = ("id", "cardholder_id", "status", "valid_from", "valid_until", "pass_number")


def _write_passes(session: Session, snapshot: Snapshot, plan: Plan, new_ids: Sequence[int],
                  holder_ids: dict[str, int], facts: HolderFactsById, now: datetime, *, alone: bool = False
                  ) -> set[int]:
    """Insert and update passes; return the row ids of the cardholders whose eligibility may have changed
    with them: a stored cardholder with a new or changed pass, and any cardholder a stored pass moved to.

    On a source's first load (no pass of it stored) every pass of a new cardholder is one written here, as
    new: each goes to ``facts`` too, so that the grants need not read a city's passes back (0.35-0.5 s of a
    first sync of 200,000 on SQLite). Otherwise a stored pass may belong to a new cardholder, and the grants
    read them all.

    ``alone``: this transaction holds the table locked (a first load, see ``keys_checked_at_end``). The new
    passes' ids are taken before their insert, as the cardholders' are: on PostgreSQL in one move then, where
    the column's default drew each from the sequence during the copy (a first sync's 200,000 passes took
    0.60-0.64 s of the server's time to copy with their ids, 0.68-0.77 s without)."""
    table = Pass.__table__
    reserved = iter(reserve_ids(session, table, plan.passes.new, alone=alone))
    changed_for: set[int] = set()
    days = DaysByOrdinal()
    passes_all_new = not snapshot.passes

    def as_row(values: tuple) -> dict:
        pass_id, holder_id, status, valid_from, valid_until = values
        return {"cardholder_id": holder_id, "status": status, "valid_from": days[valid_from],
                "valid_until": days[valid_until], "missing_since": None, "updated_at": now, "_id": pass_id}

    with _Updates(table, as_row) as changed:

        def new_rows() -> Iterator[tuple]:
            for write in plan.passes:
                holder_id = holder_ids[write.holder_key] if write.holder_new is None else new_ids[write.holder_new]
                if write.existing_id is not None or write.holder_key in snapshot.holders:
                    changed_for.add(holder_id)
                if write.existing_id is None:
                    if passes_all_new and write.holder_new is not None:
                        facts.note_new_pass(write.holder_new, (write.status.value, write.valid_from,
                                                               write.valid_until))
                    yield (next(reserved), holder_id, write.status.value, write.valid_from, write.valid_until,
                           write.pass_number)
                else:
                    changed.add((write.existing_id, holder_id, write.status.value, ordinal(write.valid_from),
                                 ordinal(write.valid_until)))

        _streamed(session, table, _NEW_PASS_COLUMNS, new_rows(), {"created_at": now, "updated_at": now})
        changed.apply(session)
    if passes_all_new:
        facts.all_passes_noted()
    return changed_for


def _write_replacements(session: Session, plan: Plan, now: datetime) -> set[int]:
    """The old number stops working (the counter only accepts active passes); budgets stay with the child.
    Return the row ids of the replaced passes' cardholders: a rule may count a replaced pass, and a pass the
    export no longer lists is marked replaced here alone, with no write of the plan's naming its owner."""
    if not plan.replacements:
        return set()
    numbers = sorted({number for pair in plan.replacements for number in pair})
    stored: dict[str, tuple[int, int]] = {}  # pass number -> (pass id, cardholder id)
    for start in range(0, len(numbers), _ID_CHUNK):
        stored.update((number, (pass_id, owner)) for number, pass_id, owner in session.execute(
            select(Pass.pass_number, Pass.id, Pass.cardholder_id)
            .where(Pass.pass_number.in_(numbers[start:start + _ID_CHUNK]))))
    replaced = [(stored[old], stored.get(new)) for old, new in plan.replacements if old in stored]
    _update_by_id(session, Pass.__table__, [
        {"_id": pass_id, "status": PassState.REPLACED, "replaced_by_id": successor[0] if successor else None,
         "missing_since": None, "updated_at": now} for (pass_id, _owner), successor in replaced])
    return {owner for (_pass_id, owner), _successor in replaced}


def _write_absences(session: Session, plan: Plan, today: date, now: datetime) -> None:
    _update_ids(session, Pass, plan.passes_missing, missing_since=today, updated_at=now)
    _update_ids(session, Pass, plan.passes_deactivated, status=PassState.INACTIVE, updated_at=now)
    _update_ids(session, Cardholder, plan.holders_missing, status=HolderStatus.MISSING, missing_since=today,
                updated_at=now)
    _update_ids(session, Cardholder, plan.holders_deactivated, status=HolderStatus.INACTIVE, deactivated_at=now,
                updated_at=now)


def _active_after(snapshot: Snapshot, plan: Plan, written: _WrittenHolders) -> Sequence[int]:
    """The row ids of the source's cardholders that are active once the plan is written (what the grants
    judge among), each once and in ascending order: the active ones read, less those going missing, plus
    every one written (a write makes it active). Compact: on a first sync, the range of the new ids itself;
    else an array of 8 bytes an id."""
    set_apart = {*plan.holders_missing, *plan.holders_deactivated, *written.existing_ids}
    stored = [known.id for known in snapshot.holders.values()
              if known.status == HolderStatus.ACTIVE and known.id not in set_apart]
    stored.extend(written.existing_ids)
    stored.sort()
    new_ids = written.new_ids  # ascending, as reserved
    if not stored:
        return new_ids
    if not new_ids or stored[-1] < new_ids[0]:  # as a rule: new ids come after every stored one
        return array("q", itertools.chain(stored, new_ids))
    return array("q", heapq.merge(stored, new_ids))


def _update_by_id(session: Session, table, rows: list[dict]) -> None:  # type: ignore[no-untyped-def]
    if not rows:
        return
    statement = table.update().where(table.c.id == bindparam("_id"))
    for start in range(0, len(rows), BATCH_SIZE):
        session.execute(statement, rows[start:start + BATCH_SIZE])


def _update_ids(session: Session, model, ids: list[int], **values: object) -> None:  # type: ignore[no-untyped-def]
    for start in range(0, len(ids), _ID_CHUNK):
        session.execute(update(model).where(model.id.in_(ids[start:start + _ID_CHUNK])).values(**values)
                        .execution_options(synchronize_session=False))
