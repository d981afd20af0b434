"""What a shop may see and do at the counter, shared by the API and the counter page.

A shop learns that a pass is usable, the child's first name (or initials) and
age, and the budgets it may redeem; nothing else about the person. Unknown,
blocked, replaced and expired passes are indistinguishable: all raise
``PassNotUsable``, so answers cannot be used to learn which passes exist.

Every OPEN budget whose period has started can be spent, also in the rules'
``expiry_grace_days`` after its period ended (a late receipt for the school
year): the roll-over closes a budget only after the grace, and a closed budget
is no longer offered. ``expires_on`` is the last day it can be spent:
``period_end + expiry_grace_days`` (the caller passes the grace it runs with).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from adapter import ledger
from adapter.crypto import Vault
from adapter.db import Database
from adapter.models import Budget, BudgetStatus, Cardholder, Merchant, Pass, utcnow
from adapter.personal import PersonalFields, open_sealed

MAX_PASS_NUMBER_LENGTH = 32


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
class BudgetView:
    budget_id: int
    rule_name: str
    category: str | None
    available_cents: int
    expires_on: date  # the last day it can be spent: period end plus the expiry grace
    redeemable_here: bool


@dataclass(frozen=True)
class BalanceView:
    pass_status: str
    valid_until: date | None
    holder_name: str  # first name, or initials when the source has no first name
    age: int | None
    budgets: list[BudgetView]
    as_of: datetime


def check_balance(session: Session, vault: Vault, merchant: Merchant, pass_number: str,
                  today: date | None = None, *, expiry_grace_days: int = 0) -> BalanceView:
    today = today or date.today()
    grace = timedelta(days=expiry_grace_days)
    card, holder, budgets = _usable_pass_with_budgets(session, pass_number, today, with_holder=True)
    assert holder is not None
    personal = open_sealed(vault, holder.personal_encrypted)
    return BalanceView(
        pass_status=card.status.value, valid_until=card.valid_until,
        holder_name=_display_name(personal), age=_age(personal, today),
        budgets=[BudgetView(budget.id, budget.rule_name, budget.category, budget.balance_cents,
                            budget.period_end + grace, merchant.may_redeem(budget.category)) for budget in budgets],
        as_of=utcnow())


def redeem(db: Database, merchant: Merchant, pass_number: str, amount_cents: int, *,
           category: str | None = None, budget_id: int | None = None, allow_partial: bool = False,
           reference: str | None = None, idempotency_key: str | None = None, fingerprint: str | None = None,
           today: date | None = None,
           in_progress_wait_ms: int = ledger.DEFAULT_IN_PROGRESS_WAIT_MS,
           guard: Callable[[Session], None] | None = None) -> ledger.RedemptionOutcome:
    """Find the budget the shop means, check it may use it, and redeem through the ledger.

    With an idempotency key and a fingerprint, everything happens in one write transaction:
    ``guard`` (e.g. the caller's abuse check) first, then the key's record, and only then the
    pass look-up. A request seen before is answered from its stored outcome before the pass is
    looked up again: a replay answers as the first request did, even if the pass was blocked in
    between. A refusal (unusable pass, no budget, category) rolls the record back with everything else.
    """
    today = today or date.today()

    def resolve(session: Session) -> tuple[ledger.RedemptionRequest, int]:
        card, _, budgets = _usable_pass_with_budgets(session, pass_number, today, with_holder=False)
        budget = _choose_budget(budgets, category=category, budget_id=budget_id)
        if not merchant.may_redeem(budget.category):
            raise CategoryNotAllowed(f"this shop may not redeem budgets of category {budget.category!r}")
        return ledger.RedemptionRequest(
            merchant_id=merchant.id, budget_id=budget.id, pass_id=card.id, amount_cents=amount_cents,
            actor=f"merchant:{merchant.id}", allow_partial=allow_partial, reference=reference,
            idempotency_key=idempotency_key, fingerprint=fingerprint), budget.balance_cents

    if idempotency_key is not None and fingerprint is not None:
        return ledger.redeem_resolving(db, merchant.id, idempotency_key, fingerprint, amount_cents, resolve,
                                       guard=guard, in_progress_wait_ms=in_progress_wait_ms)
    # Without a client fingerprint the ledger's own fingerprint needs the budget: resolve first.
    with db.read() as session:
        if guard is not None:
            guard(session)
        request, _seen_balance = resolve(session)
    return ledger.redeem(db, request, in_progress_wait_ms=in_progress_wait_ms)


def usable_pass(session: Session, pass_number: str, today: date) -> Pass:
    card, _, _ = _usable_pass_with_budgets(session, pass_number, today, with_holder=False)
    return card


def _usable_pass_with_budgets(session: Session, pass_number: str, today: date, *,
                              with_holder: bool) -> tuple[Pass, Cardholder | None, list[Budget]]:
    """The pass (with its holder when asked) and the holder's open budgets, in one statement."""
    if not (pass_number.isascii() and pass_number.isdigit() and len(pass_number) <= MAX_PASS_NUMBER_LENGTH):
        raise PassNotUsable("pass not usable")
    open_budget = and_(Budget.cardholder_id == Pass.cardholder_id, Budget.status == BudgetStatus.OPEN,
                       # No period_end filter: an ended period stays spendable until the
                       # roll-over closes it after the grace days.
                       Budget.period_start <= today)
    query = select(Pass, Cardholder, Budget).join(Cardholder, Cardholder.id == Pass.cardholder_id) if with_holder \
        else select(Pass, Budget)
    rows = session.execute(query.outerjoin(Budget, open_budget).where(Pass.pass_number == pass_number)
                           .order_by(Budget.period_end, Budget.id)).all()
    if not rows or not rows[0][0].is_usable_on(today):
        raise PassNotUsable("pass not usable")
    holder = rows[0][1] if with_holder else None
    return rows[0][0], holder, [row[-1] for row in rows if row[-1] is not None]


def _choose_budget(budgets: list[Budget], *, category: str | None, budget_id: int | None) -> Budget:
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


def _age(personal: PersonalFields, today: date) -> int | None:
    born = personal.birth_date
    if born is None:
        return None
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))
