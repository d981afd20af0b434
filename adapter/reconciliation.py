"""A merchant's own redemptions, with their reversals, and its reversals by their own time, page by page, for till
reconciliation.

Pages follow a keyset on (created_at, id): as fast on page 100 as on page 1, and
stable while new redemptions arrive, with one exception on PostgreSQL: a
redemption's time is taken before its transaction commits, so one still being
written while a page is read can commit with a time behind that page's cursor
and never be listed by the pages after it (SQLite writes one transaction at a
time). A period read once it is over is whole; the README says so. Making the
order exact would take a commit-ordered key (the writing transaction's id,
listed only once older than every transaction still running). The position is handed out as an opaque
cursor; the query is always limited to the asking merchant, so a cursor cannot
reach another merchant's rows. It also holds the listing's ``from`` and ``to``: a till that follows
``next_cursor`` alone (as the document says to) stays within the period it asked for.
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


@dataclass(frozen=True)
class ListedReversal:
    """A reversal as the reversals listing shows it: with the redemption it gave back (part of)."""

    reversal: ReversalLine
    redemption_id: str
    reference: str | None  # the redemption's, as the till sent it


@dataclass(frozen=True)
class ReversalPage:
    lines: list[ListedReversal]
    next_cursor: str | None


def redemption_page(session: Session, merchant_id: int, *, created_from: datetime | None = None,
                    created_before: datetime | None = None, cursor: str | None = None, limit: int = 50) -> Page:
    query = (select(Redemption, Budget.category, Pass.pass_number)
             .join(Budget, Budget.id == Redemption.budget_id).join(Pass, Pass.id == Redemption.pass_id)
             .where(Redemption.merchant_id == merchant_id))
    rows, next_cursor = _keyset_page(session, query, Redemption.created_at, Redemption.id,
                                     created_from=created_from, created_before=created_before, cursor=cursor,
                                     limit=limit)
    reversals = _reversals_of(session, [redemption.id for redemption, _, _ in rows])
    lines = [RedemptionLine(redemption.id, redemption.created_at, redemption.amount_cents, redemption.reversed_cents,
                            redemption.budget_id, category, pass_number_tail(pass_number), redemption.reference,
                            reversals.get(redemption.id, []))
             for redemption, category, pass_number in rows]
    return Page(lines, next_cursor)


def reversal_page(session: Session, merchant_id: int, *, created_from: datetime | None = None,
                  created_before: datetime | None = None, cursor: str | None = None, limit: int = 50) -> ReversalPage:
    """This merchant's reversals by when they were made, whatever the time of their redemptions: with a day's
    redemptions, what the day moved, without listing back over the reversal window."""
    query = (select(Reversal, Redemption.reference).join(Redemption, Redemption.id == Reversal.redemption_id)
             .where(Redemption.merchant_id == merchant_id))
    rows, next_cursor = _keyset_page(session, query, Reversal.created_at, Reversal.id, created_from=created_from,
                                     created_before=created_before, cursor=cursor, limit=limit)
    return ReversalPage([ListedReversal(_reversal_line(reversal), reversal.redemption_id, reference)
                         for reversal, reference in rows], next_cursor)


def _keyset_page(session: Session, query, created_at, row_id, *, created_from: datetime | None,  # type: ignore[no-untyped-def]
                 created_before: datetime | None, cursor: str | None, limit: int) -> tuple[list, str | None]:  # type: ignore[type-arg]
    """Up to ``limit`` rows of ``query`` in (``created_at``, ``row_id``) order from ``created_from`` to before
    ``created_before`` and after ``cursor``'s position, and the cursor of the next page (None on the last)."""
    if cursor is not None:
        after_created, after_id, cursor_from, cursor_before = decode_cursor(cursor)
        # A bound the request leaves out is the listing's own: a till that reconciles yesterday and follows
        # next_cursor alone must not get today's rows counted into yesterday.
        created_from = created_from if created_from is not None else cursor_from
        created_before = created_before if created_before is not None else cursor_before
    if created_from is not None:
        query = query.where(created_at >= created_from)
    if created_before is not None:
        query = query.where(created_at < created_before)
    if cursor is not None:
        query = query.where(or_(created_at > after_created, and_(created_at == after_created, row_id > after_id)))
    rows = session.execute(query.order_by(created_at, row_id).limit(limit + 1)).all()
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1][0]
    return rows[:limit], encode_cursor(last.created_at, last.id, created_from=created_from,
                                       created_before=created_before)


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


def encode_cursor(created_at: datetime, row_id: str, *, created_from: datetime | None = None,
                  created_before: datetime | None = None) -> str:
    """The position after (created_at, row_id) in a listing bounded by ``created_from`` and ``created_before``."""
    raw = json.dumps([created_at.isoformat(), row_id, _moment_text(created_from), _moment_text(created_before)],
                     separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str, datetime | None, datetime | None]:
    """(created_at, redemption_id, created_from, created_before). A cursor handed out before it held the
    listing's bounds (two items) is still read, without them."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_text, redemption_id, *bounds = json.loads(raw)
        if not isinstance(redemption_id, str) or len(bounds) not in (0, 2):
            raise ValueError
        created_from, created_before = (_utc_moment(text) for text in bounds) if bounds else (None, None)
        created_at = _utc_moment(created_text)
        if created_at is None:
            raise ValueError
        return created_at, redemption_id, created_from, created_before
    except (ValueError, TypeError, OverflowError):
        raise BadCursor("not a cursor from this service") from None


def _moment_text(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _utc_moment(text: str | None) -> datetime | None:
    if text is None:
        return None
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError
    # A made-up time whose UTC lies outside the calendar (0001-01-01T00:00+14:00) would fail in the query.
    return moment.astimezone(timezone.utc)


def _reversals_of(session: Session, redemption_ids: list[str]) -> dict[str, list[ReversalLine]]:
    found: dict[str, list[ReversalLine]] = {}
    if not redemption_ids:
        return found
    for reversal in session.execute(select(Reversal).where(Reversal.redemption_id.in_(redemption_ids))
                                    .order_by(Reversal.created_at, Reversal.id)).scalars():
        found.setdefault(reversal.redemption_id, []).append(_reversal_line(reversal))
    return found


def _reversal_line(reversal: Reversal) -> ReversalLine:
    return ReversalLine(reversal.id, reversal.amount_cents, reversal.reason, reversal.returned_to_budget,
                        reversal.created_at)
