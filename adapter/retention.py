"""Retention: personal data of cardholders gone long enough is removed; the money history stays.

A cardholder whose status is ``inactive`` and who was deactivated more than
``settings.retention.months`` ago is pseudonymised, and so is one of a source taken out of the configuration
that no run has read for as long:
- every ``*_encrypted`` column, the blind index and the keyed content hash are
  emptied, and ``pseudonymised_at`` is set;
- the source system's key for the person (and for the household, once no member
  is left with personal data) is replaced by ``retained-<row id>``, and so is
  each pass number: both would let anyone with the source system name the
  person again. A person who comes back is then simply a new cardholder.
Rows, budgets, redemptions and ledger entries stay under the row ids, so
totals, settlements and reports over past years are unchanged.

The idempotency records of money-moving requests older than the same cut-off
are deleted: a till retries within minutes, and each holds a keyed fingerprint
of its request, the full pass number included, which with the blind-index key
could name the pass again. Then the old versions of what was changed are made
unreadable on disk (``Database.scrub_removed``).

The scheduler calls ``apply(db, settings, now)`` weekly; operators run
``stadspas-adapter retention apply [--dry-run]``.
"""

from __future__ import annotations

import calendar
import logging
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, and_, delete, exists, func, or_, select, update
from sqlalchemy.orm import Session

from adapter import audit
from adapter.db import Database
from adapter.models import Cardholder, HolderStatus, Household, IdempotencyRecord, Pass, SyncRun
from adapter.settings import Settings

log = logging.getLogger("adapter.retention")

PSEUDONYM_PREFIX = "retained-"
# Where retention changes or deletes rows: their old versions are scrubbed afterwards.
SCRUBBED_TABLES = ("cardholders", "passes", "households", "idempotency_records")
BATCH_SIZE = 500


@dataclass(frozen=True)
class RetentionReport:
    cutoff: datetime
    cardholders: int
    passes: int
    households: int
    dry_run: bool
    request_records: int = 0  # idempotency records older than the cut-off, deleted
    scrubbed: bool = True  # the old versions were made unreadable on disk (see Database.scrub_removed)


def cutoff_for(now: datetime, months: int) -> datetime:
    """``now`` minus whole calendar months (31 March - 1 month = 28/29 February)."""
    month_index = now.year * 12 + (now.month - 1) - months
    year, month = divmod(month_index, 12)
    day = min(now.day, calendar.monthrange(year, month + 1)[1])
    return now.replace(year=year, month=month + 1, day=day)


def apply(db: Database, settings: Settings, now: datetime, *, dry_run: bool = False,
          actor: str = "scheduler") -> RetentionReport:
    """Pseudonymise every cardholder past retention; audit ``retention.applied`` with the counts."""
    cutoff = cutoff_for(now, settings.retention.months)
    if dry_run:
        # Counted by the database from the due cardholders' query, not from a list of their ids: the first run
        # in a large city finds more than PostgreSQL takes parameters in one statement (65,535).
        due = _due(cutoff, settings.sources).correlate(None)
        with db.read() as session:
            holders = session.execute(select(func.count()).select_from(due.subquery())).scalar_one()
            passes = session.execute(select(func.count()).select_from(Pass).where(_passes_of(due))).scalar_one()
            households = session.execute(select(func.count()).select_from(Household)
                                         .where(_households_emptied_by(due))).scalar_one()
            requests = session.execute(select(func.count()).select_from(IdempotencyRecord)
                                       .where(IdempotencyRecord.created_at < cutoff)).scalar_one()
        return RetentionReport(cutoff, holders, passes, households, dry_run=True, request_records=requests)

    holders = passes = households = 0
    while True:
        # One transaction per batch: a long run never holds locks for long, and a crash keeps what is done.
        with db.write() as session:
            holder_ids = session.execute(_due(cutoff, settings.sources).limit(BATCH_SIZE)).scalars().all()
            if not holder_ids:
                break
            passes += _pseudonymise_passes(session, holder_ids)
            households += _pseudonymise_households(session, holder_ids, now)
            _pseudonymise_holders(session, holder_ids, now)
            holders += len(holder_ids)
    with db.write() as session:
        requests = session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.created_at < cutoff),
                                   execution_options={"synchronize_session": False}).rowcount
        audit.record(session, actor, "retention.applied", "cardholders", cutoff=cutoff.isoformat(),
                     months=settings.retention.months, cardholders=holders, passes=passes, households=households,
                     request_records=requests)
    # Also when this run removed nothing: the run before may have stopped after its last batch, before or during
    # the scrub (a scheduler restarted then), and nothing else would scrub what it removed.
    scrubbed = db.scrub_removed(SCRUBBED_TABLES)
    if not scrubbed:
        log.warning("retention: an open reader kept some of the removed values on disk (SQLite's write-ahead log, "
                    "or row versions a PostgreSQL snapshot can still see); they go at the next check-point or "
                    "vacuum, or run retention again when the service is quiet")
    return RetentionReport(cutoff, holders, passes, households, dry_run=False, request_records=requests,
                           scrubbed=scrubbed)


def _due(cutoff: datetime, configured_sources: Collection[str]):  # type: ignore[no-untyped-def]
    """The cardholders past retention: those deactivated before ``cutoff``, and those of a source no longer in
    the configuration (its system replaced, or the source renamed) that no run has read since ``cutoff``. Such a
    source is never synced again, so its cardholders were never deactivated and kept their personal data for
    good."""
    deactivated_long_ago = and_(Cardholder.status == HolderStatus.INACTIVE, Cardholder.deactivated_at.is_not(None),
                                Cardholder.deactivated_at < cutoff)
    read_since = exists().where(SyncRun.source == Cardholder.source, SyncRun.started_at >= cutoff)
    left_with_their_source = and_(Cardholder.source.not_in(sorted(configured_sources)),
                                  Cardholder.updated_at < cutoff, ~read_since)
    return (select(Cardholder.id)
            .where(or_(deactivated_long_ago, left_with_their_source), Cardholder.pseudonymised_at.is_(None))
            .order_by(Cardholder.id))


def _pseudonymise_holders(session: Session, holder_ids: list[int], now: datetime) -> None:
    personal = {column.name: None for column in Cardholder.__table__.columns if column.name.endswith("_encrypted")}
    session.execute(
        update(Cardholder).where(Cardholder.id.in_(holder_ids))
        .values(**personal, bsn_index=None, content_hash=None, pseudonymised_at=now,
                source_key=PSEUDONYM_PREFIX + Cardholder.id.cast(Cardholder.source_key.type)),
        execution_options={"synchronize_session": False})


def _passes_of(holder_ids: list[int] | Select):  # type: ignore[no-untyped-def]
    return and_(Pass.cardholder_id.in_(holder_ids), Pass.pass_number.not_like(PSEUDONYM_PREFIX + "%"))


def _pseudonymise_passes(session: Session, holder_ids: list[int]) -> int:
    result = session.execute(
        update(Pass).where(_passes_of(holder_ids))
        .values(pass_number=PSEUDONYM_PREFIX + Pass.id.cast(Pass.pass_number.type)),
        execution_options={"synchronize_session": False})
    return result.rowcount


def _households_emptied_by(holder_ids: list[int] | Select):  # type: ignore[no-untyped-def]
    """Households of these cardholders (their ids, or a query of them) with no other member who still has
    personal data."""
    still_personal = exists().where(
        Cardholder.household_id == Household.id, Cardholder.pseudonymised_at.is_(None),
        Cardholder.id.not_in(holder_ids))
    candidates = select(Cardholder.household_id).where(Cardholder.id.in_(holder_ids))
    return and_(Household.id.in_(candidates), ~still_personal, Household.source_key.not_like(PSEUDONYM_PREFIX + "%"))


def _pseudonymise_households(session: Session, holder_ids: list[int], now: datetime) -> int:
    result = session.execute(
        update(Household).where(_households_emptied_by(holder_ids))
        .values(source_key=PSEUDONYM_PREFIX + Household.id.cast(Household.source_key.type), updated_at=now),
        execution_options={"synchronize_session": False})
    return result.rowcount
