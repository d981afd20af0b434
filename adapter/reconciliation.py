"""A merchant's own redemptions, with their reversals, page by page, for till reconciliation.

Pages follow a keyset on (created_at, id): as fast on page 100 as on page 1, and
stable while new redemptions arrive, with one exception on PostgreSQL: a
redemption's time is taken before its transaction commits, so one still being
written while a page is read can commit with a time behind that page's cursor
and never be listed by the pages after it (SQLite writes one transaction at a
time). A period read once it is over is whole; the README says so. Making the
order exact would take a commit-ordered key (the writing transaction's id,
listed only once older than every transaction still running). The position is handed out as an opaque
cursor; the query is always limited to the asking merchant, so a cursor cannot
reach another merchant's rows.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from adapter.models import Budget, Pass, Redemption, Reversal
from adapter.redaction import pass_number_tail


class BadCursor(ValueError):
    """The cursor was not one this service handed out."""


@dataclass(frozen=True)
class ReversalLine:
    reversal_id: str
    amount_cents: int
    reason: str
    returned_to_budget: bool
    created_at: datetime


@dataclass(frozen=True)
class RedemptionLine:
    redemption_id: str
    created_at: datetime
    amount_cents: int
    reversed_cents: int
    budget_id: int
    category: str | None
    pass_last4: str  # its last 4 digits (a third of a shorter one): enough to match a receipt, not to use the pass
    reference: str | None
    reversals: list[ReversalLine]


@dataclass(frozen=True)
class Page:
    lines: list[RedemptionLine]
    next_cursor: str | None


def redemption_page(session: Session, merchant_id: int, *, created_from: datetime | None = None,
                    created_before: datetime | None = None, cursor: str | None = None, limit: int = 50) -> Page:
    query = (select(Redemption, Budget.category, Pass.pass_number)
             .join(Budget, Budget.id == Redemption.budget_id).join(Pass, Pass.id == Redemption.pass_id)
             .where(Redemption.merchant_id == merchant_id))
    if created_from is not None:
        query = query.where(Redemption.created_at >= created_from)
    if created_before is not None:
        query = query.where(Redemption.created_at < created_before)
    if cursor is not None:
        after_created, after_id = decode_cursor(cursor)
        query = query.where(or_(Redemption.created_at > after_created,
                                and_(Redemption.created_at == after_created, Redemption.id > after_id)))
    rows = session.execute(query.order_by(Redemption.created_at, Redemption.id).limit(limit + 1)).all()
    reversals = _reversals_of(session, [redemption.id for redemption, _, _ in rows[:limit]])
    lines = [RedemptionLine(redemption.id, redemption.created_at, redemption.amount_cents, redemption.reversed_cents,
                            redemption.budget_id, category, pass_number_tail(pass_number), redemption.reference,
                            reversals.get(redemption.id, []))
             for redemption, category, pass_number in rows[:limit]]
    next_cursor = encode_cursor(lines[-1].created_at, lines[-1].redemption_id) if len(rows) > limit else None
    return Page(lines, next_cursor)


def find_redemption(session: Session, merchant_id: int, redemption_id: str) -> RedemptionLine | None:
    """One of this merchant's redemptions; another merchant's is as absent as a made-up id."""
    row = session.execute(
        select(Redemption, Budget.category, Pass.pass_number)
        .join(Budget, Budget.id == Redemption.budget_id).join(Pass, Pass.id == Redemption.pass_id)
        .where(Redemption.id == redemption_id, Redemption.merchant_id == merchant_id)
    ).one_or_none()
    if row is None:
        return None
    redemption, category, pass_number = row
    return RedemptionLine(redemption.id, redemption.created_at, redemption.amount_cents, redemption.reversed_cents,
                          redemption.budget_id, category, pass_number_tail(pass_number), redemption.reference,
                          _reversals_of(session, [redemption.id]).get(redemption.id, []))


def encode_cursor(created_at: datetime, redemption_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), redemption_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_text, redemption_id = json.loads(raw)
        created_at = datetime.fromisoformat(created_text)
        if created_at.tzinfo is None or not isinstance(redemption_id, str):
            raise ValueError
        # A made-up time whose UTC lies outside the calendar (0001-01-01T00:00+14:00) would fail in the query.
        return created_at.astimezone(timezone.utc), redemption_id
    except (ValueError, TypeError, OverflowError):
        raise BadCursor("not a cursor from this service") from None


def _reversals_of(session: Session, redemption_ids: list[str]) -> dict[str, list[ReversalLine]]:
    found: dict[str, list[ReversalLine]] = {}
    if not redemption_ids:
        return found
    for reversal in session.execute(select(Reversal).where(Reversal.redemption_id.in_(redemption_ids))
                                    .order_by(Reversal.created_at, Reversal.id)).scalars():
        found.setdefault(reversal.redemption_id, []).append(ReversalLine(
            reversal.id, reversal.amount_cents, reversal.reason, reversal.returned_to_budget, reversal.created_at))
    return found
