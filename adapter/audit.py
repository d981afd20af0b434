"""The audit trail: who did what to which object, append-only and hash-chained.

Every action by a person or an operator (merchant created, key rotated, sync
forced, correction, settlement, retention...) is one row. Each row carries the
hash of the previous row, so ``verify`` finds a changed or deleted row: a
security officer can trust the trail without trusting the database's users.
Rows never hold personal data: objects are named by id.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import String, Text, select, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from adapter.models import Base, BigId, UtcDateTime, utcnow

GENESIS_HASH = "0" * 64
AUDIT_CHAIN_LOCK = 0x5354_4150_4155_4454  # "STAPAUDT": the advisory lock id of the chain's head


class AuditEntry(Base):
    __tablename__ = "audit_entries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    actor: Mapped[str] = mapped_column(String(128))  # "operator:alice", "merchant:3", "scheduler"
    action: Mapped[str] = mapped_column(String(64))  # "merchant.created", "sync.forced", ...
    object_ref: Mapped[str] = mapped_column(String(128))  # "merchant:3", "budget:17"
    details_json: Mapped[str] = mapped_column(Text, default="{}")
    previous_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64))


@dataclass(frozen=True)
class AuditProblem:
    entry_id: int
    problem: str


def record(session: Session, actor: str, action: str, object_ref: str, **details: object) -> AuditEntry:
    """Append one row in the caller's transaction (so the action and its trail commit together)."""
    serialise_writers(session)
    previous = session.execute(
        select(AuditEntry.entry_hash).order_by(AuditEntry.id.desc()).limit(1).with_for_update()
    ).scalar_one_or_none()
    entry = AuditEntry(occurred_at=utcnow(), actor=actor, action=action, object_ref=object_ref,
                       details_json=json.dumps(details, sort_keys=True, default=str),
                       previous_hash=previous or GENESIS_HASH)
    entry.entry_hash = _hash_of(entry)
    session.add(entry)
    session.flush()
    return entry


def serialise_writers(session: Session) -> None:
    """Make this transaction the only one appending to the trail until it ends (taken again by record: a
    caller that reads the trail before appending takes it first)."""
    # Two writers reading the same chain head would fork the chain, and `audit verify`
    # would then cry tampering. On PostgreSQL a transaction-scoped advisory lock makes
    # appends take turns (FOR UPDATE on the head row does not: an empty table has no row,
    # and a waiter re-reads the old head). On SQLite, BEGIN IMMEDIATE already serialises.
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUDIT_CHAIN_LOCK})


def verify(session: Session) -> list[AuditProblem]:
    """Walk the chain; name every row whose content or link does not match."""
    problems: list[AuditProblem] = []
    expected_previous = GENESIS_HASH
    for entry in session.execute(select(AuditEntry).order_by(AuditEntry.id)).scalars():
        if entry.previous_hash != expected_previous:
            problems.append(AuditProblem(entry.id, "the row before it was changed or deleted"))
        if _hash_of(entry) != entry.entry_hash:
            problems.append(AuditProblem(entry.id, "this row was changed after it was written"))
        expected_previous = entry.entry_hash
    return problems


def _hash_of(entry: AuditEntry) -> str:
    canonical = json.dumps([entry.previous_hash, entry.occurred_at.isoformat(), entry.actor, entry.action,
                            entry.object_ref, entry.details_json], separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
