"""The sync history as people read it: recent runs and a run's rejected records (CLI and dashboard)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from adapter.models import SyncRecordOutcome, SyncRun


@dataclass(frozen=True)
class RunSummary:
    run_id: int
    source: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    duration_seconds: float | None
    records_read: int
    created: int
    updated: int
    unchanged: int
    rejected: int
    missing: int
    deactivated: int
    budgets_granted: int
    forced: bool
    holder: str
    reason: str | None


@dataclass(frozen=True)
class RecordOutcome:
    record_key: str  # "line 12" or a source key; never personal data
    outcome: str
    reason: str | None


def recent_runs(session: Session, source: str | None = None, limit: int = 20) -> list[RunSummary]:
    query = select(SyncRun).order_by(SyncRun.id.desc()).limit(limit)
    if source is not None:
        query = query.where(SyncRun.source == source)
    return [_summary(run) for run in session.execute(query).scalars()]


def get_run(session: Session, run_id: int) -> RunSummary | None:
    run = session.get(SyncRun, run_id)
    return _summary(run) if run is not None else None


def run_outcomes(session: Session, run_id: int, outcome: str | None = "rejected", limit: int = 1000
                 ) -> list[RecordOutcome]:
    """The recorded outcomes of a run: every rejected record, and a sample of the others."""
    query = select(SyncRecordOutcome).where(SyncRecordOutcome.run_id == run_id).order_by(SyncRecordOutcome.id)
    if outcome is not None:
        query = query.where(SyncRecordOutcome.outcome == outcome)
    return [RecordOutcome(row.record_key, row.outcome, row.reason)
            for row in session.execute(query.limit(limit)).scalars()]


def _summary(run: SyncRun) -> RunSummary:
    duration = (run.finished_at - run.started_at).total_seconds() if run.finished_at else None
    return RunSummary(
        run_id=run.id, source=run.source, status=run.status.value, started_at=run.started_at,
        finished_at=run.finished_at, duration_seconds=duration, records_read=run.records_read, created=run.created,
        updated=run.updated, unchanged=run.unchanged, rejected=run.rejected, missing=run.missing,
        deactivated=run.deactivated, budgets_granted=run.budgets_granted, forced=run.forced, holder=run.holder,
        reason=run.reason)
