"""What a shop may see and do at the counter, shared by the API and the counter page.

A shop learns that a pass is usable, the child's first name (or initials) and
the budgets it may redeem; nothing else about the person: not the child's age,
nor which other budgets (a sports club's, say) the child holds. Unknown,
blocked, replaced and expired passes are indistinguishable: all raise
``PassNotUsable``, so answers cannot be used to learn which passes exist.

Every OPEN budget whose period has started can be spent, also in the rules'
``expiry_grace_days`` after its period ended (a late receipt for the school
year), and not a day longer. ``expires_on`` is the last day it can be spent:
``period_end + expiry_grace_days`` (the caller passes the grace it runs with).
The roll-over closes such a budget the night after, but the counter does not
wait for it: between midnight and the roll-over, or while the scheduler is down,
a budget past its last day is neither offered nor debited.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, Select, and_, bindparam, select
from sqlalchemy.orm import Session

from adapter import ledger
from adapter.crypto import Vault
from adapter.db import Database
from adapter.models import Budget, BudgetStatus, Cardholder, Merchant, Pass, PassState, utcnow
from adapter.periods import earliest_spendable_end, last_spendable_day, local_day
from adapter.personal import PersonalFields, open_sealed

MAX_PASS_NUMBER_LENGTH = 32


def as_scanned(text: str) -> str:
    """A pass number as a scanner or a person sends it, without the whitespace around it (a scanner ends its number
    with a line end or a tab) and the spaces between its groups of digits (people type them as printed). The API
    and the counter page read it alike: the same scan must not be refused through a till."""
    return text.strip().replace(" ", "")


class CounterRefusal(Exception):
    """A request the counter refuses; ``code`` is stable for tills to switch on."""

    code = "refused"


class PassNotUsable(CounterRefusal):
    code = "pass_not_usable"


class CategoryNotAllowed(CounterRefusal):
    code = "category_not_allowed"


class NoSuchBudget(CounterRefusal):
    code = "budget_not_found"


@dataclass(frozen=True)
class LookupGuard:
    """A check made in the pass look-up's own statement, before the pass is judged (an abuse limit).

    ``column`` (None: nothing to read) is selected beside the pass with ``params`` bound; ``judge``
    gets its value and raises to refuse, whether or not the pass exists. Pass the same ``column``
    object each time: the look-up statement is built once per column.
    """

    column: ColumnElement[Any] | None
    params: dict[str, Any]
    judge: Callable[[Any], None]


@dataclass(frozen=True)
class BudgetView:
    budget_id: int
    rule_name: str
    category: str | None
    available_cents: int
    expires_on: date  # the last day it can be spent: period end plus the expiry grace


@dataclass(frozen=True)
class BalanceView:
    pass_status: str
    valid_until: date | None
    holder_name: str  # first name, or initials when the source has no first name
    budgets: list[BudgetView]  # those the asking shop may redeem, and only those
    as_of: datetime


def counter_today() -> date:
    """The day at the counter: Amsterdam's, whatever the server's clock zone (UTC in a container). A pass valid
    until 31 July works all of that day here, and a budget spent up to its last day stops at local midnight."""
    return local_day(utcnow())


def check_balance(session: Session, vault: Vault, merchant: Merchant, pass_number: str,
                  today: date | None = None, *, expiry_grace_days: int = 0,
                  guard: LookupGuard | None = None) -> BalanceView:
    today = today or counter_today()
    card, personal_encrypted, budgets = _usable(
        _look_up(session, pass_number, today, expiry_grace_days, with_holder=True, guard=guard), today)
    assert personal_encrypted is not None
    personal = open_sealed(vault, personal_encrypted)
    return BalanceView(
        pass_status=card.status.value, valid_until=card.valid_until,
        holder_name=_display_name(personal),
        budgets=[BudgetView(budget.id, budget.rule_name, budget.category, budget.balance_cents,
                            last_spendable_day(budget.period_end, expiry_grace_days))
                 for budget in budgets if merchant.may_redeem(budget.category)],
        as_of=utcnow())


def redeem(db: Database, merchant: Merchant, pass_number: str, amount_cents: int, *,
           category: str | None = None, budget_id: int | None = None, allow_partial: bool = False,
           reference: str | None = None, idempotency_key: str | None = None, fingerprint: str | None = None,
           today: date | None = None, expiry_grace_days: int = 0,
           in_progress_wait_ms: int = ledger.DEFAULT_IN_PROGRESS_WAIT_MS,
           guard: LookupGuard | None = None) -> ledger.RedemptionOutcome:
    """Find the budget the shop means, check it may use it, and redeem through the ledger.

    ``expiry_grace_days``: the rules' grace after a period's end, as for ``check_balance``: a budget is spent
    up to its ``expires_on`` and not after, whether or not the roll-over closed it yet.

    With an idempotency key and a fingerprint, everything happens in one write transaction:
    the pass look-up with ``guard`` (e.g. the caller's abuse check) in one statement, then the
    key's record, and only then is the pass judged. A request seen before is answered from its
    stored outcome, whatever the look-up found: a replay answers as the first request did, even if
    the pass was blocked in between. A refusal (unusable pass, no budget, category) rolls the
    record back with everything else.
    """
    today = today or counter_today()
    found: list[_Found] = []

    def look_up(session: Session, read: ledger.ReadBeside) -> None:
        found[:] = [_look_up(session, pass_number, today, expiry_grace_days, with_holder=False, guard=guard,
                             read=read)]

    def resolve(session: Session) -> tuple[ledger.RedemptionRequest, int]:
        card, _, budgets = _usable(found[0], today)
        # Judged on the request and the shop alone, and other categories' budgets left out before choosing: had
        # the answer turned on the child's budgets, a shop could learn by asking which budgets for other kinds of
        # shop the child holds, which the balance check does not tell it (DOMAIN.md).
        if budget_id is None and not merchant.may_redeem(category):
            raise CategoryNotAllowed(f"this shop may not redeem budgets of category {category!r}")
        budget = _choose_budget([budget for budget in budgets if merchant.may_redeem(budget.category)],
                                category=category, budget_id=budget_id)
        return ledger.RedemptionRequest(
            merchant_id=merchant.id, budget_id=budget.id, pass_id=card.id, amount_cents=amount_cents,
            actor=f"merchant:{merchant.id}", allow_partial=allow_partial, reference=reference,
            idempotency_key=idempotency_key, fingerprint=fingerprint), budget.balance_cents

    if idempotency_key is not None and fingerprint is not None:
        return ledger.redeem_resolving(db, merchant.id, idempotency_key, fingerprint, amount_cents, resolve,
                                       guard=look_up, in_progress_wait_ms=in_progress_wait_ms)
    # Without a client fingerprint the ledger's own fingerprint needs the budget: resolve first.
    with db.read() as session:
        look_up(session, None)
        request, _seen_balance = resolve(session)
    return ledger.redeem(db, request, in_progress_wait_ms=in_progress_wait_ms)


class _PassColumns(NamedTuple):
    """What a redemption reads of a pass: enough for ``Pass.is_usable_on`` and the ledger."""

    id: int
    status: PassState
    valid_from: date | None
    valid_until: date | None

    def is_usable_on(self, day: date) -> bool:
        return Pass.is_usable_on(self, day)  # type: ignore[arg-type]  # the one rule, on these columns


class _BudgetColumns(NamedTuple):
    """What a redemption reads of a budget: enough to choose it and to debit it."""

    id: int
    category: str | None
    balance_cents: int
    period_end: date


class _ShownBudgetColumns(NamedTuple):
    """What a balance check reads of a budget: a redemption's columns and the name the shop sees."""

    id: int
    category: str | None
    balance_cents: int
    period_end: date
    rule_name: str


@dataclass(frozen=True)
class _Found:
    card: _PassColumns | None
    personal_encrypted: str | None  # the holder's sealed personal fields, when asked for
    budgets: list[Any]  # _BudgetColumns, or _ShownBudgetColumns with the holder


def _look_up(session: Session, pass_number: str, today: date, expiry_grace_days: int, *, with_holder: bool,
             guard: LookupGuard | None = None, read: ledger.ReadBeside = None) -> _Found:
    """The pass (with its holder's sealed personal fields when asked) and the holder's open budgets,
    in one statement.

    Only the columns the counter needs, as plain tuples on the session's connection (same
    transaction): loading whole rows into the ORM was a good part of a request's CPU.
    ``guard`` is judged first, in the same statement when the pass exists (an unknown one costs a
    second read of the guard's column, and so does an unusable one, to look alike). Whether the pass
    is usable is for ``_usable`` to say. ``read`` runs the statement (the ledger's, in a redemption:
    it inserts the idempotency key's record in the same statement); the rows' order is ours to make.
    """
    guard_column = guard.column if guard is not None else None
    params = guard.params if guard is not None else {}
    if not (pass_number.isascii() and pass_number.isdigit() and len(pass_number) <= MAX_PASS_NUMBER_LENGTH):
        _judge(session, guard, guard_column, params)
        return _Found(None, None, [])
    values = {"pass_number": pass_number, "today": today,
              "earliest_end": earliest_spendable_end(today, expiry_grace_days), **params}
    statement = _look_up_statement(with_holder, guard_column)
    rows = read(statement, values) if read is not None else session.connection().execute(statement, values).all()
    if not rows:
        _judge(session, guard, guard_column, params)
        return _Found(None, None, [])
    if guard is not None:
        guard.judge(rows[0][-1] if guard_column is not None else None)
    card = _PassColumns(*rows[0][:4])
    if guard_column is not None and not card.is_usable_on(today):
        # The same second read an unknown number costs: response time must not tell a blocked, replaced
        # or expired pass from one that never existed (their answers are identical too).
        session.execute(select(guard_column), params).scalar_one()
    if with_holder:
        return _Found(card, rows[0][4], [_ShownBudgetColumns(*row[5:10]) for row in rows if row[5] is not None])
    return _Found(card, None, [_BudgetColumns(*row[4:8]) for row in rows if row[4] is not None])


# By shape and the guard column's identity (a column's == builds SQL); the column is kept alive beside
# its statement.
_LOOK_UPS: dict[tuple[bool, int], tuple[ColumnElement[Any] | None, Select[Any]]] = {}


def _look_up_statement(with_holder: bool, guard_column: ColumnElement[Any] | None) -> Select[Any]:
    """The columns of _PassColumns, with the holder its sealed personal fields, then those of
    _BudgetColumns (_ShownBudgetColumns with the holder), in their order. Built once per shape and
    reused with new parameters: building a statement costs more CPU than running it."""
    key = (with_holder, id(guard_column))
    if key not in _LOOK_UPS:
        passes, budgets, holders = Pass.__table__, Budget.__table__, Cardholder.__table__
        card, budget = passes.c, budgets.c
        joined = passes.join(holders, holders.c.id == card.cardholder_id) if with_holder else passes
        statement = select(card.id, card.status, card.valid_from, card.valid_until,
                           *([holders.c.personal_encrypted] if with_holder else []),
                           budget.id, budget.category, budget.balance_cents, budget.period_end,
                           *([budget.rule_name] if with_holder else []),
                           *([guard_column.label("guard")] if guard_column is not None else []))
        _LOOK_UPS[key] = (guard_column, statement.select_from(joined.outerjoin(budgets, _open_budget(budget, card)))
                          .where(card.pass_number == bindparam("pass_number", type_=card.pass_number.type))
                          .order_by(budget.period_end, budget.id))
    return _LOOK_UPS[key][1]


def _open_budget(budget: Any, card: Any) -> ColumnElement[bool]:
    """The join condition of a pass's open budgets, on the budgets' and passes' table columns."""
    return and_(budget.cardholder_id == card.cardholder_id, budget.status == BudgetStatus.OPEN,
                budget.period_start <= bindparam("today", type_=budget.period_start.type),
                # Spendable up to its period's end plus the grace days (today - grace <= end), also before the
                # roll-over closes it: that runs in the night, and not at all while the scheduler is down.
                budget.period_end >= bindparam("earliest_end", type_=budget.period_end.type))


def _judge(session: Session, guard: LookupGuard | None, guard_column: ColumnElement[Any] | None,
           params: dict[str, Any]) -> None:
    if guard is not None:
        guard.judge(session.execute(select(guard_column), params).scalar_one() if guard_column is not None else None)


def _usable(found: _Found, today: date) -> tuple[_PassColumns, str | None, list[Any]]:
    if found.card is None or not found.card.is_usable_on(today):
        raise PassNotUsable("pass not usable")
    return found.card, found.personal_encrypted, found.budgets


def _choose_budget(budgets: list[Any], *, category: str | None, budget_id: int | None) -> Any:
    if budget_id is not None:
        matching = [budget for budget in budgets if budget.id == budget_id]
    else:
        # The budget that ends first is spent first, so less money expires unused.
        matching = [budget for budget in budgets if budget.category == category]
        matching.sort(key=lambda budget: (budget.balance_cents == 0, budget.period_end, budget.id))
    if not matching:
        raise NoSuchBudget("this pass has no open budget of that kind")
    return matching[0]


def _display_name(personal: PersonalFields) -> str:
    first_names = personal.first_names
    if first_names and first_names.strip():
        return first_names.split()[0]
    return personal.initials or ""

