"""The only code that moves money.

Rules (see DOMAIN.md, "Rules of money"):
- amounts are integer cents; every movement is an immutable ledger entry;
- a budget's cached ``balance_cents`` changes in the same transaction as its entry;
- no balance goes below zero, whatever the number of workers or hosts: the budget
  row is locked (``SELECT ... FOR UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE`` on
  SQLite) and the UPDATE is conditional on the balance, with a CHECK constraint
  behind both. The counter's path (``redeem_resolving``) first tries one
  conditional UPDATE on the balance it read, and takes the locking path whenever
  the outcome could depend on what changed since;
- a client's idempotency key has one effect: its record is inserted first, in the
  same transaction as the debit, so a concurrent request with the same key waits
  on the unique index and then replays the stored outcome.

``grant``, ``expire`` and ``correct`` work inside a caller's transaction (the sync
grants many budgets in one); ``redeem`` and ``reverse`` own their transaction
because they retry on a lost idempotency race.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from datetime import date, datetime, timedelta
from functools import partial
from typing import Literal, NamedTuple

from sqlalchemy import BigInteger, Select, String, Update, bindparam, cast, func, insert, literal, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from adapter.bulk import insert_tuples, reserve_ids
from adapter.db import Database
from adapter.key_record import IdempotencyInProgress, KeyRecord  # IdempotencyInProgress: raised to our callers
from adapter.models import (
    Budget,
    BudgetStatus,
    EntryKind,
    IdempotencyRecord,
    LedgerEntry,
    Redemption,
    Reversal,
    new_public_id,
    utcnow,
)
from adapter.periods import last_spendable_day
from adapter.sent_ahead import SentAhead


class LedgerError(ValueError):
    """A request the ledger refuses before touching money (a programming or input error)."""


# How long a request waits for a twin holding the same idempotency key before giving up.
DEFAULT_IN_PROGRESS_WAIT_MS = 2_000


# ---------------------------------------------------------------- outcomes

RedemptionStatus = Literal["redeemed", "insufficient_balance", "budget_not_open", "idempotency_key_reused"]
ReversalStatus = Literal[
    "reversed", "redemption_not_found", "reversal_exceeds_redemption", "reversal_window_closed",
    "idempotency_key_reused",
]


@dataclass(frozen=True)
class RedemptionRequest:
    merchant_id: int
    budget_id: int
    pass_id: int
    amount_cents: int
    actor: str
    allow_partial: bool = False
    reference: str | None = None
    idempotency_key: str | None = None
    # What makes two requests "the same" for the idempotency key; the API passes a
    # hash of the client's body. Defaults to the ledger's own fields.
    fingerprint: str | None = None


@dataclass(frozen=True)
class RedemptionOutcome:
    status: RedemptionStatus
    requested_cents: int
    amount_cents: int = 0  # what the budget paid
    remaining_to_pay_cents: int = 0  # what the customer pays themselves
    available_cents: int = 0  # the budget's balance after this request
    redemption_id: str | None = None
    budget_id: int | None = None
    created_at: str | None = None
    replayed: bool = False

    @property
    def succeeded(self) -> bool:
        return self.status == "redeemed"


@dataclass(frozen=True)
class ReversalRequest:
    merchant_id: int
    redemption_id: str
    reason: str
    actor: str
    amount_cents: int | None = None  # None: whatever is still reversible
    window: timedelta = timedelta(days=30)
    idempotency_key: str | None = None
    fingerprint: str | None = None
    # The counter's day (``adapter.counter.counter_today``) and the rules' grace: a budget past its last day
    # (period end + grace) takes no money back, also while it is still OPEN because the roll-over has not run.
    # None: the budget's status alone decides.
    today: date | None = None
    expiry_grace_days: int = 0


@dataclass(frozen=True)
class ReversalOutcome:
    status: ReversalStatus
    redemption_id: str
    amount_cents: int = 0
    reversal_id: str | None = None
    reversible_cents: int = 0  # what can still be reversed after this request
    returned_to_budget: bool = False
    available_cents: int = 0
    created_at: str | None = None
    replayed: bool = False

    @property
    def succeeded(self) -> bool:
        return self.status == "reversed"


@dataclass(frozen=True)
class Mismatch:
    budget_id: int
    problem: str


# ---------------------------------------------------------------- in the caller's transaction

def grant(session: Session, budget_id: int, amount_cents: int, actor: str, note: str | None = None) -> LedgerEntry:
    """Add money to an open budget."""
    _require_positive(amount_cents)
    balance_after = session.execute(
        update(Budget)
        .where(Budget.id == budget_id, Budget.status == BudgetStatus.OPEN)
        .values(balance_cents=Budget.balance_cents + amount_cents, granted_cents=Budget.granted_cents + amount_cents)
        .returning(Budget.balance_cents)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if balance_after is None:
        raise LedgerError(f"budget {budget_id} does not exist or has expired; a grant needs an open budget")
    return _append(session, budget_id, EntryKind.GRANT, amount_cents, balance_after, actor, note)


def expire(session: Session, budget_id: int, actor: str, note: str | None = None) -> bool:
    """Close a budget at its period's end; what is left leaves with an expiry entry. False when it was not open.
    One budget of ``expire_many``, which says what closing a budget is, once."""
    return expire_many(session, [budget_id], actor, note) == 1


# Budgets closed per statement by ``expire_many``: a few hundred ids in an IN list, well under SQLite's limit.
_EXPIRE_CHUNK = 500


def expire_many(session: Session, budget_ids: Sequence[int], actor: str, note: str | None = None) -> int:
    """``expire`` for many budgets: close each that is still open, what is left leaving with an expiry entry;
    return how many were closed. A period's end closes every budget of it in one night (each school-year and
    pass-year budget of a city on the same night): one at a time, three statements each, 50,000 budgets took
    three minutes of the roll-over, all of it holding SQLite's write lock. Here a chunk is locked and read in
    one statement, closed in one and its entries written in one; the lock (FOR UPDATE on PostgreSQL,
    SQLite's write lock) keeps the balances read until they are closed."""
    closed = 0
    for start in range(0, len(budget_ids), _EXPIRE_CHUNK):
        chunk = budget_ids[start:start + _EXPIRE_CHUNK]
        left = session.execute(
            select(Budget.id, Budget.balance_cents)
            .where(Budget.id.in_(chunk), Budget.status == BudgetStatus.OPEN).order_by(Budget.id).with_for_update()
        ).all()
        if not left:
            continue
        session.execute(update(Budget).where(Budget.id.in_([budget_id for budget_id, _ in left]))
                        .values(balance_cents=0, status=BudgetStatus.EXPIRED)
                        .execution_options(synchronize_session=False))
        entries = [(budget_id, -left_cents) for budget_id, left_cents in left if left_cents]
        if entries:
            insert_tuples(session, LedgerEntry.__table__, ("budget_id", "amount_cents"), entries,
                          {"kind": EntryKind.EXPIRY, "balance_after_cents": 0, "actor": actor, "note": note,
                           "created_at": utcnow()})
        closed += len(left)
    return closed


CORRECTION_REASON_MAX_LENGTH = 500  # the ledger entry's note (adapter.models.LedgerEntry.note)
# How long an identical correction of a budget counts as the same one typed again (see ``correct``).
REPEATED_CORRECTION_WINDOW = timedelta(hours=24)


def correct(session: Session, budget_id: int, amount_cents: int, actor: str, reason: str, *,
            again: bool = False) -> LedgerEntry:
    """A manual correction by an operator: a new entry, never an edit of an old one.

    A correction has no idempotency key: an operator whose terminal dropped after the commit, or who runs the
    command again from the shell's history, would book it twice. So one with the same amount and reason as a
    correction of the same budget within ``REPEATED_CORRECTION_WINDOW`` is refused unless ``again``. It is
    looked for after the debit, which holds the budget's row: a second run at the same moment waits for the
    first's commit, and then finds its entry."""
    if amount_cents == 0:
        raise LedgerError("a correction of 0 cents changes nothing")
    if not reason.strip():
        raise LedgerError("a correction needs a reason for the audit trail")
    if len(reason) > CORRECTION_REASON_MAX_LENGTH:  # PostgreSQL would refuse it with a database error
        raise LedgerError(f"a correction's reason has at most {CORRECTION_REASON_MAX_LENGTH} characters; shorten it")
    # Only an open budget: an expired one gave what was left back to the municipality, and money put on it now
    # could be neither spent nor expired.
    balance_after = session.execute(
        update(Budget)
        .where(Budget.id == budget_id, Budget.status == BudgetStatus.OPEN, Budget.balance_cents + amount_cents >= 0)
        .values(balance_cents=Budget.balance_cents + amount_cents)
        .returning(Budget.balance_cents)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if balance_after is None:
        status = session.execute(select(Budget.status).where(Budget.id == budget_id)).scalar_one_or_none()
        if status is not None and status != BudgetStatus.OPEN:
            raise LedgerError(f"budget {budget_id} is {status.value}: what was left went back to the municipality, "
                              "and money put on it could be neither spent nor expired. Correct an open budget of "
                              "the child instead, or grant it anew")
        raise LedgerError(f"budget {budget_id} does not exist or would go below zero")
    if not again:
        earlier = session.execute(
            select(LedgerEntry.created_at, LedgerEntry.actor)
            .where(LedgerEntry.budget_id == budget_id, LedgerEntry.kind == EntryKind.CORRECTION,
                   LedgerEntry.amount_cents == amount_cents, LedgerEntry.note == reason,
                   LedgerEntry.created_at >= utcnow() - REPEATED_CORRECTION_WINDOW)
            .order_by(LedgerEntry.id.desc()).limit(1)).first()
        if earlier is not None:
            raise LedgerError(f"budget {budget_id} already has this correction ({amount_cents} cents, the same "
                              f"reason), booked at {earlier.created_at:%Y-%m-%d %H:%M} UTC by {earlier.actor}: a "
                              "second one would book it twice. If a second one is meant, give --again")
    return _append(session, budget_id, EntryKind.CORRECTION, amount_cents, balance_after, actor, reason)


def balance_of(session: Session, budget_id: int) -> int:
    """The balance as the ledger says it is: the sum of the budget's entries."""
    total = session.execute(
        select(func.coalesce(func.sum(LedgerEntry.amount_cents), 0)).where(LedgerEntry.budget_id == budget_id)
    ).scalar_one()
    return int(total)


# ---------------------------------------------------------------- own transaction, idempotent

def redeem(db: Database, request: RedemptionRequest, *,
           in_progress_wait_ms: int = DEFAULT_IN_PROGRESS_WAIT_MS) -> RedemptionOutcome:
    """Take money from a budget for a merchant; never below zero, one effect per key."""
    _require_positive(request.amount_cents)
    return _idempotent(db, request.merchant_id, request.idempotency_key, _redemption_fingerprint(request),
                       lambda session, _record_id: (_redeem_in(session, request), False),
                       replay=_replayed_redemption,
                       reused=lambda: RedemptionOutcome(status="idempotency_key_reused",
                                                        requested_cents=request.amount_cents),
                       in_progress_wait_ms=in_progress_wait_ms)


def redeem_resolving(db: Database, merchant_id: int, idempotency_key: str, fingerprint: str, requested_cents: int,
                     resolve: Callable[[Session], tuple[RedemptionRequest, int]], *,
                     guard: Callable[[Session, ReadBeside], None] | None = None,
                     in_progress_wait_ms: int = DEFAULT_IN_PROGRESS_WAIT_MS) -> RedemptionOutcome:
    """``redeem`` for a caller that finds the budget inside the same transaction.

    In one write transaction: ``guard(session, read)``, the key's record (a replay or a reused key
    answers from it, before anything is looked up), ``resolve(session)`` -> the request and the
    budget balance it saw, then the debit. An exception from ``guard`` or ``resolve`` rolls the
    record back, so a refused request leaves no trace under its key. ``guard`` does its first read
    with ``read(statement, params)`` (its rows, as tuples) when ``read`` is not None: on PostgreSQL the
    key's record is inserted in that same statement, one round trip fewer.
    """
    _require_positive(requested_cents)

    def operation(session: Session, record_id: int | None) -> tuple[RedemptionOutcome, bool]:
        request, seen_balance_cents = resolve(session)
        _require_positive(request.amount_cents)
        fast = _redeem_seen(session, request, seen_balance_cents, record_id if db.is_postgres else None)
        return fast if fast is not None else (_redeem_in(session, request), False)

    return _idempotent(db, merchant_id, idempotency_key, fingerprint, operation,
                       replay=_replayed_redemption,
                       reused=lambda: RedemptionOutcome(status="idempotency_key_reused", requested_cents=requested_cents),
                       in_progress_wait_ms=in_progress_wait_ms, guard=guard)


def reverse(db: Database, request: ReversalRequest, *,
            in_progress_wait_ms: int = DEFAULT_IN_PROGRESS_WAIT_MS) -> ReversalOutcome:
    """Give (part of) a redemption back; the total never exceeds what was redeemed."""
    if request.amount_cents is not None:
        _require_positive(request.amount_cents)
    if not request.reason.strip():
        raise LedgerError("a reversal needs a reason")
    fingerprint = request.fingerprint or _fingerprint(
        "reverse", request.redemption_id, request.amount_cents, request.reason)
    return _idempotent(db, request.merchant_id, request.idempotency_key, fingerprint,
                       lambda session, _record_id: (_reverse_in(session, request), False),
                       replay=lambda stored: ReversalOutcome(**stored, replayed=True),
                       reused=lambda: ReversalOutcome(status="idempotency_key_reused",
                                                      redemption_id=request.redemption_id),
                       in_progress_wait_ms=in_progress_wait_ms)


def stored_redemption(db: Database, merchant_id: int, idempotency_key: str,
                      fingerprint: str) -> RedemptionOutcome | None:
    """The committed outcome of this very request (same key and fingerprint), as its replay; None otherwise.

    For a caller whose own check refused the request before its key's record was read (an abuse limit):
    a till's retry of a payment it got no answer to must still get that answer. It tells the caller nothing
    it was not told the first time.
    """
    with db.read() as session:
        stored = _stored_record(session, merchant_id, idempotency_key)
        if stored is None or stored.request_hash != fingerprint or stored.outcome_json == "{}":
            return None
        return _replayed_redemption(json.loads(stored.outcome_json))


def _redemption_fingerprint(request: RedemptionRequest) -> str:
    return request.fingerprint or _fingerprint(
        "redeem", request.budget_id, request.pass_id, request.amount_cents, request.allow_partial, request.reference)


def _replayed_redemption(stored: dict) -> RedemptionOutcome:  # type: ignore[type-arg]
    return RedemptionOutcome(**stored, replayed=True)


def _stored_record(session: Session, merchant_id: int, key: str) -> IdempotencyRecord | None:
    return session.execute(
        select(IdempotencyRecord).where(IdempotencyRecord.merchant_id == merchant_id, IdempotencyRecord.key == key)
    ).scalar_one_or_none()


def _idempotent(db, merchant_id, key, fingerprint, operation, *, replay, reused,  # type: ignore[no-untyped-def]
                in_progress_wait_ms, guard=None):
    # Two attempts suffice: the second only runs after a concurrent request with the
    # same key committed, and then it finds that request's record.
    for _attempt in range(3):
        try:
            outcome = _idempotent_once(db, merchant_id, key, fingerprint, operation, replay=replay, reused=reused,
                                       in_progress_wait_ms=in_progress_wait_ms, guard=guard)
        except IntegrityError:
            if key is None:
                raise
            continue
        if outcome is not None:
            return outcome
    raise RuntimeError("idempotency record could be neither written nor read; retry the request")


def _idempotent_once(db, merchant_id, key, fingerprint, operation, *, replay, reused,  # type: ignore[no-untyped-def]
                     in_progress_wait_ms, guard):
    """One attempt: the outcome, or None when the key's record vanished under us (try again)."""
    with db.write() as session:
        record = KeyRecord(db, merchant_id, key, fingerprint, in_progress_wait_ms) if key is not None else None
        if guard is not None:
            # Its first read carries the key's record on PostgreSQL (see adapter.key_record).
            guard(session, partial(record.read_beside, session) if record is not None else None)
        record_id = None
        if record is not None:
            # Inserted before the money moves (see adapter.key_record), by the guard's read or now.
            # A key seen before inserts nothing, and its stored outcome answers.
            record_id = record.insert(session)
            if record_id is None:
                stored = _stored_record(session, merchant_id, key)
                if stored is None:
                    return None  # the twin rolled back after our insert gave way
                if stored.request_hash != fingerprint:
                    return reused()
                return replay(json.loads(stored.outcome_json))
        outcome, stored = operation(session, record_id)
        if key is not None and not stored:
            session.execute(update(IdempotencyRecord).where(IdempotencyRecord.id == record_id)
                            .values(outcome_json=_outcome_json(outcome))
                            .execution_options(synchronize_session=False))
        return outcome


def _outcome_json(outcome: RedemptionOutcome | ReversalOutcome) -> str:
    """What a replay answers from: the outcome's fields, without ``replayed``, in a stable order."""
    # Shallow (every field is a str, int, bool or None): asdict's deep copy cost more than the dump.
    return json.dumps({name: getattr(outcome, name) for name in _OUTCOME_FIELDS[type(outcome)]}, sort_keys=True)


_OUTCOME_FIELDS = {kind: tuple(f.name for f in fields(kind) if f.name != "replayed")
                   for kind in (RedemptionOutcome, ReversalOutcome)}


def _redeem_seen(session: Session, request: RedemptionRequest, seen_balance_cents: int,
                 record_id: int | None) -> tuple[RedemptionOutcome, bool] | None:
    """The debit in one conditional UPDATE, on the balance the caller read in this transaction.

    Taken only when the outcome cannot depend on what changed since the read: the full amount
    needs balance >= amount; a partial take of everything seen needs the balance unchanged.
    None: the locking path (``_redeem_in``) decides. With ``record_id`` (PostgreSQL) the debit,
    the redemption, its ledger entry and the idempotency record's outcome are written in one
    statement; the bool says whether the record was written.
    """
    take_cents = min(request.amount_cents, seen_balance_cents) if request.allow_partial else request.amount_cents
    if not 0 < take_cents <= seen_balance_cents:
        return None
    takes_all_seen = take_cents != request.amount_cents  # a partial take: the balance must be unchanged
    debit, debit_and_writes = _seen_debit_statements(takes_all_seen)
    params = {"budget_id": request.budget_id, "take_cents": take_cents, "seen_balance_cents": seen_balance_cents}
    if record_id is None:
        balance_after = session.connection().execute(debit, params).scalar_one_or_none()
        if balance_after is None:
            return None
        return _record_redemption(session, request, request.budget_id, take_cents, balance_after), False
    now = utcnow()
    outcome = RedemptionOutcome(
        status="redeemed", requested_cents=request.amount_cents, amount_cents=take_cents,
        remaining_to_pay_cents=request.amount_cents - take_cents, available_cents=0,
        redemption_id=new_public_id(), budget_id=request.budget_id, created_at=now.isoformat())
    # On the session's connection: Core statements, and the ORM's per-execution work cost more CPU than the rest.
    balance_after = session.connection().execute(debit_and_writes, {
        **params, "redemption_id": outcome.redemption_id, "redeeming_merchant_id": request.merchant_id,
        "pass_id": request.pass_id, "reference": request.reference, "idempotency_key": request.idempotency_key,
        "redeemed_at": now, "entry_amount_cents": -take_cents, "actor": request.actor, "record_id": record_id,
        # The stored outcome is _outcome_json(outcome) with the balance the debit returned put in.
        "outcome_template": _outcome_json(replace(outcome, available_cents=None)),  # type: ignore[arg-type]
    }).scalar_one_or_none()
    if balance_after is None:
        return None
    return replace(outcome, available_cents=balance_after), True


# How json.dumps writes the balance still to come; a quote inside a string value is escaped, so only
# the key itself can match.
_PENDING_BALANCE = '"available_cents": null'
_SEEN_DEBITS: dict[bool, tuple[Update, Select]] = {}  # type: ignore[type-arg]


def _seen_debit_statements(takes_all_seen: bool) -> tuple[Update, Select]:  # type: ignore[type-arg]
    """The conditional debit alone, and (PostgreSQL) the debit with the redemption's writes in one
    statement. Built once and reused with new parameters: building costs more CPU than running.
    No parameter is named after a column of budgets or idempotency_records: an UPDATE takes such a
    parameter as a value to SET.

    In the second, data-modifying CTEs read their row from the debit's RETURNING, so when the
    condition no longer holds nothing is written and the locking path decides. Foreign keys are
    checked at the end of the statement, so the entry may name the redemption inserted beside it.
    """
    if takes_all_seen not in _SEEN_DEBITS:
        take = bindparam("take_cents", type_=BigInteger)
        # The table, not the mapped class: a Core statement skips the ORM's per-execution work.
        budgets = Budget.__table__
        still_true = budgets.c.balance_cents == bindparam("seen_balance_cents", type_=BigInteger) \
            if takes_all_seen else budgets.c.balance_cents >= take
        debit = (update(budgets)
                 .where(budgets.c.id == bindparam("budget_id", type_=BigInteger),
                        budgets.c.status == BudgetStatus.OPEN, still_true)
                 .values(balance_cents=budgets.c.balance_cents - take)
                 .returning(budgets.c.balance_cents.label("balance_after")))
        debited = debit.cte("debit")
        redemption = _insert_per_debit(debited, Redemption, {
            "id": "redemption_id", "merchant_id": "redeeming_merchant_id", "budget_id": "budget_id", "pass_id": "pass_id",
            "amount_cents": "take_cents", "reversed_cents": literal(0, BigInteger), "reference": "reference",
            "idempotency_key": "idempotency_key", "created_at": "redeemed_at"}).cte("new_redemption")
        entry = _insert_per_debit(debited, LedgerEntry, {
            "budget_id": "budget_id", "kind": literal(EntryKind.REDEMPTION, LedgerEntry.kind.type),
            "amount_cents": "entry_amount_cents", "balance_after_cents": debited.c.balance_after, "actor": "actor",
            "note": literal(None, String), "redemption_id": "redemption_id", "reversal_id": literal(None, String),
            "created_at": "redeemed_at"}).cte("new_entry")
        outcome_json = func.replace(bindparam("outcome_template", type_=String), _PENDING_BALANCE,
                                    literal('"available_cents": ').concat(cast(debited.c.balance_after, String)))
        records = IdempotencyRecord.__table__
        record = (update(records)  # no debit, no change
                  .where(records.c.id == bindparam("record_id", type_=BigInteger),
                         select(debited.c.balance_after).exists())
                  .values(outcome_json=select(outcome_json).scalar_subquery())).cte("stored_outcome")
        _SEEN_DEBITS[takes_all_seen] = (debit, select(debited.c.balance_after).add_cte(redemption).add_cte(entry)
                                        .add_cte(record))
    return _SEEN_DEBITS[takes_all_seen]


def _insert_per_debit(debited, model, values: dict):  # type: ignore[no-untyped-def,type-arg]
    """INSERT INTO model (...) SELECT ... FROM debited: one row when the debit happened, none otherwise.
    A string value names the parameter that fills the column."""
    table = model.__table__
    row = [bindparam(value, type_=table.c[name].type) if isinstance(value, str) else value
           for name, value in values.items()]
    return insert(table).from_select(list(values), select(*row).select_from(debited))


def _redeem_in(session: Session, request: RedemptionRequest) -> RedemptionOutcome:
    budget = _lock_budget(session, request.budget_id)
    if budget is None or budget.status != BudgetStatus.OPEN:
        return RedemptionOutcome(status="budget_not_open", requested_cents=request.amount_cents,
                                 remaining_to_pay_cents=request.amount_cents, budget_id=request.budget_id)
    available_cents = budget.balance_cents
    take_cents = min(request.amount_cents, available_cents) if request.allow_partial else request.amount_cents
    if take_cents <= 0 or take_cents > available_cents:
        return _insufficient(request, available_cents)
    # The row lock already serialises us; the condition is the second line of defence.
    balance_after = session.execute(
        update(Budget)
        .where(Budget.id == budget.id, Budget.balance_cents >= take_cents, Budget.status == BudgetStatus.OPEN)
        .values(balance_cents=Budget.balance_cents - take_cents)
        .returning(Budget.balance_cents)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if balance_after is None:
        return _insufficient(request, available_cents)
    return _record_redemption(session, request, budget.id, take_cents, balance_after)


def _record_redemption(session: Session, request: RedemptionRequest, budget_id: int, take_cents: int,
                       balance_after: int) -> RedemptionOutcome:
    now = utcnow()
    redemption = Redemption(merchant_id=request.merchant_id, budget_id=budget_id, pass_id=request.pass_id,
                            amount_cents=take_cents, reference=request.reference,
                            idempotency_key=request.idempotency_key, created_at=now)
    session.add(redemption)
    session.flush()
    _append(session, budget_id, EntryKind.REDEMPTION, -take_cents, balance_after, request.actor,
            redemption_id=redemption.id, created_at=now)
    session.flush()
    return RedemptionOutcome(
        status="redeemed", requested_cents=request.amount_cents, amount_cents=take_cents,
        remaining_to_pay_cents=request.amount_cents - take_cents, available_cents=balance_after,
        redemption_id=redemption.id, budget_id=budget_id, created_at=now.isoformat())


def _insufficient(request: RedemptionRequest, available_cents: int) -> RedemptionOutcome:
    return RedemptionOutcome(status="insufficient_balance", requested_cents=request.amount_cents,
                             available_cents=available_cents, budget_id=request.budget_id,
                             remaining_to_pay_cents=request.amount_cents - available_cents)


def _reverse_in(session: Session, request: ReversalRequest) -> ReversalOutcome:
    redemption = session.execute(
        select(Redemption)
        .where(Redemption.id == request.redemption_id, Redemption.merchant_id == request.merchant_id)
        .with_for_update()
    ).scalar_one_or_none()
    if redemption is None:
        # Another merchant's redemption looks exactly like one that does not exist.
        return ReversalOutcome(status="redemption_not_found", redemption_id=request.redemption_id)
    reversible_cents = redemption.amount_cents - redemption.reversed_cents
    now = utcnow()
    if now - redemption.created_at > request.window:
        return ReversalOutcome(status="reversal_window_closed", redemption_id=redemption.id,
                               reversible_cents=reversible_cents)
    amount_cents = request.amount_cents if request.amount_cents is not None else reversible_cents
    if amount_cents <= 0 or amount_cents > reversible_cents:
        return ReversalOutcome(status="reversal_exceeds_redemption", redemption_id=redemption.id,
                               amount_cents=amount_cents, reversible_cents=reversible_cents)
    session.execute(
        update(Redemption)
        .where(Redemption.id == redemption.id, Redemption.reversed_cents + amount_cents <= Redemption.amount_cents)
        .values(reversed_cents=Redemption.reversed_cents + amount_cents)
        .execution_options(synchronize_session=False)
    )
    budget = _lock_budget(session, redemption.budget_id)
    assert budget is not None  # a redemption's budget is never deleted (foreign key)
    returned = budget.status == BudgetStatus.OPEN and (
        # Past its last day the counter neither offers nor debits it (adapter.counter): money put back could never
        # be spent, and the roll-over would take it to the municipality with the rest.
        request.today is None or last_spendable_day(budget.period_end, request.expiry_grace_days) >= request.today)
    reversal = Reversal(redemption_id=redemption.id, amount_cents=amount_cents, reason=request.reason,
                        actor=request.actor, returned_to_budget=returned, created_at=now)
    session.add(reversal)
    session.flush()
    balance_after = budget.balance_cents + amount_cents
    _append(session, budget.id, EntryKind.REVERSAL, amount_cents, balance_after, request.actor,
            request.reason, redemption_id=redemption.id, reversal_id=reversal.id, created_at=now)
    if returned:
        session.execute(update(Budget).where(Budget.id == budget.id)
                        .values(balance_cents=balance_after).execution_options(synchronize_session=False))
    else:
        # The period is over: the money goes back to the municipality, visibly.
        balance_after = budget.balance_cents
        _append(session, budget.id, EntryKind.EXPIRY, -amount_cents, balance_after, request.actor,
                "reversal on an expired budget", redemption_id=redemption.id, reversal_id=reversal.id,
                created_at=now)
    return ReversalOutcome(status="reversed", redemption_id=redemption.id, amount_cents=amount_cents,
                           reversal_id=reversal.id, reversible_cents=reversible_cents - amount_cents,
                           returned_to_budget=returned, available_cents=balance_after,
                           created_at=now.isoformat())


# ---------------------------------------------------------------- verification

def verify(session: Session) -> list[Mismatch]:
    """Recompute every balance from its entries; list every budget that disagrees."""
    mismatches: list[Mismatch] = []
    sums = (
        select(
            LedgerEntry.budget_id.label("budget_id"),
            func.sum(LedgerEntry.amount_cents).label("total"),
            func.sum(LedgerEntry.amount_cents).filter(LedgerEntry.kind == EntryKind.GRANT).label("granted"),
        ).group_by(LedgerEntry.budget_id).subquery()
    )
    rows = session.execute(
        select(Budget.id, Budget.balance_cents, Budget.granted_cents, sums.c.total, sums.c.granted)
        .outerjoin(sums, sums.c.budget_id == Budget.id)
    )
    for budget_id, balance_cents, granted_cents, total, granted in rows:
        ledger_total, ledger_granted = int(total or 0), int(granted or 0)
        if balance_cents != ledger_total:
            mismatches.append(Mismatch(budget_id, f"balance {balance_cents} but entries sum to {ledger_total}"))
        if granted_cents != ledger_granted:
            mismatches.append(Mismatch(budget_id, f"granted {granted_cents} but grant entries sum to {ledger_granted}"))
        if balance_cents < 0:
            mismatches.append(Mismatch(budget_id, f"negative balance {balance_cents}"))
    reversed_sums = (
        select(Reversal.redemption_id, func.sum(Reversal.amount_cents).label("total"))
        .group_by(Reversal.redemption_id).subquery()
    )
    for redemption_id, budget_id, amount_cents, reversed_cents, total in session.execute(
        select(Redemption.id, Redemption.budget_id, Redemption.amount_cents, Redemption.reversed_cents,
               reversed_sums.c.total).outerjoin(reversed_sums, reversed_sums.c.redemption_id == Redemption.id)
    ):
        if reversed_cents != int(total or 0) or reversed_cents > amount_cents:
            mismatches.append(Mismatch(budget_id, f"redemption {redemption_id}: reversed {reversed_cents} "
                                                  f"of {amount_cents}, reversal rows sum to {int(total or 0)}"))
    mismatches.extend(_rows_against_entries(session))
    return mismatches


def _rows_against_entries(session: Session) -> list[Mismatch]:
    """Each redemption and reversal row against its own entry. The settlement pays shops from these rows (the
    entries are append-only, the rows are not): a row that no longer says what its entry booked would be paid
    as it says now, while every balance still adds up."""
    mismatches: list[Mismatch] = []
    booked = (select(LedgerEntry.redemption_id, func.sum(-LedgerEntry.amount_cents).label("total"))
              .where(LedgerEntry.kind == EntryKind.REDEMPTION).group_by(LedgerEntry.redemption_id).subquery())
    for redemption_id, budget_id, amount_cents, total in session.execute(
        select(Redemption.id, Redemption.budget_id, Redemption.amount_cents, booked.c.total)
        .outerjoin(booked, booked.c.redemption_id == Redemption.id)
    ):
        if amount_cents != int(total or 0):
            mismatches.append(Mismatch(budget_id, f"redemption {redemption_id}: {amount_cents} cents, but its "
                                                  f"ledger entry booked {int(total or 0)}"))
    booked = (select(LedgerEntry.reversal_id, func.sum(LedgerEntry.amount_cents).label("total"))
              .where(LedgerEntry.kind == EntryKind.REVERSAL).group_by(LedgerEntry.reversal_id).subquery())
    for reversal_id, budget_id, amount_cents, total in session.execute(
        select(Reversal.id, Redemption.budget_id, Reversal.amount_cents, booked.c.total)
        .join(Redemption, Redemption.id == Reversal.redemption_id)
        .outerjoin(booked, booked.c.reversal_id == Reversal.id)
    ):
        if amount_cents != int(total or 0):
            mismatches.append(Mismatch(budget_id, f"reversal {reversal_id}: {amount_cents} cents, but its "
                                                  f"ledger entry booked {int(total or 0)}"))
    return mismatches


# ---------------------------------------------------------------- helpers

# (statement, params) -> rows as tuples; None: the caller reads as it always does (no key, no record).
ReadBeside = Callable[[Select, dict], list] | None  # type: ignore[type-arg]


def _lock_budget(session: Session, budget_id: int) -> Budget | None:
    # FOR UPDATE is a no-op on SQLite, where BEGIN IMMEDIATE already holds the write lock.
    return session.execute(
        select(Budget).where(Budget.id == budget_id).with_for_update().execution_options(populate_existing=True)
    ).scalar_one_or_none()


def _append(session: Session, budget_id: int, kind: EntryKind, amount_cents: int, balance_after_cents: int,
            actor: str, note: str | None = None, *, redemption_id: str | None = None,
            reversal_id: str | None = None, created_at: datetime | None = None) -> LedgerEntry:
    entry = LedgerEntry(budget_id=budget_id, kind=kind, amount_cents=amount_cents,
                        balance_after_cents=balance_after_cents, actor=actor, note=note,
                        redemption_id=redemption_id, reversal_id=reversal_id, created_at=created_at or utcnow())
    session.add(entry)
    return entry


def _require_positive(amount_cents: int) -> None:
    if not isinstance(amount_cents, int) or isinstance(amount_cents, bool) or amount_cents <= 0:
        raise LedgerError(f"amount must be a positive whole number of cents, got {amount_cents!r}")


def _fingerprint(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()


# ---------------------------------------------------------------- many budgets at once (the nightly grants)

class NewBudget(NamedTuple):
    """A budget to open. The fields are the budget table's columns from ``cardholder_id`` to
    ``period_end`` in order, then the first grant, then the child's age band (``adapter.age_bands``)."""

    cardholder_id: int
    rule_code: str
    rule_name: str
    rule_version: int
    category: str | None
    period_key: str
    period_start: date
    period_end: date
    amount_cents: int
    age_band: str | None = None


_BUDGET_COLUMNS = ("id", "cardholder_id", "granted_cents", "balance_cents")
# The NewBudget fields between the child and the amount, then its age band, as the budget table names them.
_SHARED_COLUMNS = ("rule_code", "rule_name", "rule_version", "category", "period_key", "period_start", "period_end",
                   "age_band")
_GRANT_COLUMNS = ("budget_id", "amount_cents", "balance_after_cents")


def open_budgets(session: Session, new_budgets: list[NewBudget], actor: str, note: str | None = None) -> int:
    """Create budgets with their first grant, in bulk, in the caller's transaction.

    The first sync of a municipality opens hundreds of thousands of budgets; one
    UPDATE per grant would take minutes. Each budget is inserted with its balance
    already equal to its single grant entry, which keeps ``verify`` exact. The ids
    are reserved first, so budgets and entries are written in one pass without
    reading anything back. The unique (cardholder, rule, period) constraint makes a
    second attempt fail rather than grant twice.
    """
    # The budgets of one rule and period share every column but the child and the amount: they go in
    # together (see open_rule_budgets).
    by_rule: dict[tuple, list[tuple[int, int]]] = {}
    for new_budget in new_budgets:
        by_rule.setdefault((*new_budget[1:8], new_budget.age_band), []).append(
            (new_budget.cardholder_id, new_budget.amount_cents))
    return open_rule_budgets(session, list(by_rule.items()), actor, note)


def open_rule_budgets(session: Session, by_rule: Sequence[tuple[tuple, Sequence[tuple[int, int]]]], actor: str,
                      note: str | None = None, *, alone: bool = False, ahead: SentAhead | None = None) -> int:
    """``open_budgets``, with the budgets given rule by rule: for each, the fields its budgets share (those
    of ``NewBudget`` between the child and the amount, then the age band) and the (cardholder id, amount in
    cents) of each.

    The grants judge children rule by rule and call this directly: a first sync opens 370,000 budgets, and
    a ``NewBudget`` of nine fields for each, sorted back into rules here, cost a quarter of a second.

    ``alone``: this transaction holds the budgets and the ledger locked (a first load): their ids are taken
    as one run each (``reserve_ids``), the entries' too instead of one at a time as each row goes in.

    ``ahead``: the first grants' copy may be sent ahead on it (``adapter.sent_ahead``), so that the caller
    goes on while the server writes them; any error of theirs is raised at the connection's next use.
    """
    count = 0
    for shared, budgets in by_rule:
        if len(shared) != len(_SHARED_COLUMNS):
            raise ValueError(f"a rule's budgets need {len(_SHARED_COLUMNS)} shared fields ({', '.join(_SHARED_COLUMNS)})"
                             f", got {len(shared)}")
        for _holder_id, amount_cents in budgets:
            if type(amount_cents) is not int or amount_cents <= 0:
                _require_positive(amount_cents)  # says what was wrong
        count += len(budgets)
    if not count:
        return 0
    stamp = utcnow()
    budget_ids = reserve_ids(session, Budget.__table__, count, alone=alone)
    # The reserved ids go to the budgets rule by rule, in the order of by_rule.
    reserved = iter(budget_ids)
    budget_constants = {"status": BudgetStatus.OPEN, "created_at": stamp}
    if session.connection().dialect.name == "postgresql":
        # COPY sends every value of every row whatever is shared, so every rule's budgets go in one COPY: each
        # COPY costs the server about 2 ms to start and end, and a first sync made one per rule and slice.
        insert_tuples(session, Budget.__table__, (*_BUDGET_COLUMNS, *_SHARED_COLUMNS),
                      ((next(reserved), holder_id, amount_cents, amount_cents, *shared)
                       for shared, budgets in by_rule for holder_id, amount_cents in budgets), budget_constants)
    else:
        # SQLite: the shared columns are given once for all of a rule's budgets, in the statement itself (see
        # insert_tuples), instead of seven values, two of them dates to convert, on every row.
        for shared, budgets in by_rule:
            if budgets:
                insert_tuples(session, Budget.__table__, _BUDGET_COLUMNS,
                              ((next(reserved), holder_id, amount_cents, amount_cents)
                               for holder_id, amount_cents in budgets),
                              {**dict(zip(_SHARED_COLUMNS, shared)), **budget_constants})
    constants = {"kind": EntryKind.GRANT, "actor": actor, "note": note, "created_at": stamp}
    if isinstance(budget_ids, range):
        entry_ids = reserve_ids(session, LedgerEntry.__table__, count, alone=alone) if alone else None
        # Not one run (the lock was not held after all, and another writer drew ids meanwhile): those ids are
        # lost, and each entry draws its own.
        _write_first_grants(session, budget_ids, constants, entry_ids if isinstance(entry_ids, range) else None,
                            ahead)
    else:
        amounts = (amount_cents for _shared, budgets in by_rule for _holder_id, amount_cents in budgets)
        insert_tuples(session, LedgerEntry.__table__, _GRANT_COLUMNS,
                      ((budget_id, amount_cents, amount_cents) for budget_id, amount_cents in zip(budget_ids, amounts)),
                      constants)
    return count


def _write_first_grants(session: Session, budget_ids: range, constants: dict[str, object],
                        entry_ids: Sequence[int] | None = None, ahead: SentAhead | None = None) -> None:
    """Each budget of ``budget_ids`` (an unbroken run of ids reserved for the budgets just written, and for
    nothing else) gets its first entry, a grant of its whole balance, copied from its row in one statement.
    ``entry_ids``: ids reserved for the entries, one unbroken run as long as ``budget_ids``, given to them in
    the same order; without them each entry draws its own (on PostgreSQL, from the sequence: 0.3 s of a first
    sync's 370,000 entries on our bench machine).

    A first sync opens hundreds of thousands of budgets. Sent row by row, with the same four values bound
    again on every row, their entries cost SQLite three times what the copy inside the database costs
    (3.1 s against 0.9 s for 370,000), and PostgreSQL a second COPY of every amount. The amounts are read
    from the rows just written, so an entry cannot differ from its budget's balance.
    """
    budgets, entries = Budget.__table__, LedgerEntry.__table__
    names = [*_GRANT_COLUMNS, *constants]
    values = [budgets.c.id, budgets.c.granted_cents, budgets.c.balance_cents,
              *[literal(value, entries.c[name].type) for name, value in constants.items()]]
    if entry_ids is not None:
        if not (isinstance(entry_ids, range) and entry_ids.step == 1 and len(entry_ids) == len(budget_ids)):
            raise ValueError("the entries' ids must be one unbroken run, one id for each budget")
        names.insert(0, "id")
        values.insert(0, budgets.c.id + (entry_ids[0] - budget_ids[0]))
    copied = select(*values).where(budgets.c.id.between(budget_ids[0], budget_ids[-1])).order_by(budgets.c.id)
    statement = insert(entries).from_select(names, copied)
    if ahead is not None:
        ahead.send(statement)
    else:
        session.execute(statement)
