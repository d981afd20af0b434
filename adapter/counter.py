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

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from adapter import ledger
from adapter.crypto import Vault
from adapter.db import Database
from adapter.models import Budget, BudgetStatus, Cardholder, Merchant, Pass, utcnow

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
    card = usable_pass(session, pass_number, today)
    holder = card.cardholder
    budgets = _open_budgets(session, holder.id, today)
    return BalanceView(
        pass_status=card.status.value, valid_until=card.valid_until,
        holder_name=_display_name(vault, holder), age=_age(vault, holder, today),
        budgets=[BudgetView(budget.id, budget.rule_name, budget.category, budget.balance_cents,
                            budget.period_end + grace, merchant.may_redeem(budget.category)) for budget in budgets],
        as_of=utcnow())


def redeem(db: Database, merchant: Merchant, pass_number: str, amount_cents: int, *,
           category: str | None = None, budget_id: int | None = None, allow_partial: bool = False,
           reference: str | None = None, idempotency_key: str | None = None, fingerprint: str | None = None,
           today: date | None = None,
           in_progress_wait_ms: int = ledger.DEFAULT_IN_PROGRESS_WAIT_MS) -> ledger.RedemptionOutcome:
    """Find the budget the shop means, check it may use it, and redeem through the ledger.

    With an idempotency key and a fingerprint, a request seen before is answered from its
    stored outcome first, before the pass is looked up again: a replay answers as the first
    request did, even if the pass was blocked in between.
    """
    today = today or date.today()
    if idempotency_key is not None and fingerprint is not None:
        stored = ledger.stored_redemption(db, merchant.id, idempotency_key, fingerprint, amount_cents)
        if stored is not None:
            return stored
    with db.read() as session:
        card = usable_pass(session, pass_number, today)
        budget = _choose_budget(session, card.cardholder_id, today, category=category, budget_id=budget_id)
        if not merchant.may_redeem(budget.category):
            raise CategoryNotAllowed(f"this shop may not redeem budgets of category {budget.category!r}")
        pass_id, chosen_budget_id = card.id, budget.id
    return ledger.redeem(db, ledger.RedemptionRequest(
        merchant_id=merchant.id, budget_id=chosen_budget_id, pass_id=pass_id, amount_cents=amount_cents,
        actor=f"merchant:{merchant.id}", allow_partial=allow_partial, reference=reference,
        idempotency_key=idempotency_key, fingerprint=fingerprint), in_progress_wait_ms=in_progress_wait_ms)


def usable_pass(session: Session, pass_number: str, today: date) -> Pass:
    if not (pass_number.isdigit() and len(pass_number) <= MAX_PASS_NUMBER_LENGTH):
        raise PassNotUsable("pass not usable")
    card = session.execute(select(Pass).where(Pass.pass_number == pass_number)).scalar_one_or_none()
    if card is None or not card.is_usable_on(today):
        raise PassNotUsable("pass not usable")
    return card


def _open_budgets(session: Session, cardholder_id: int, today: date) -> list[Budget]:
    # No period_end filter: an ended period stays spendable until the roll-over closes it after the grace days.
    return list(session.execute(
        select(Budget).where(Budget.cardholder_id == cardholder_id, Budget.status == BudgetStatus.OPEN,
                             Budget.period_start <= today)
        .order_by(Budget.period_end, Budget.id)
    ).scalars())


def _choose_budget(session: Session, cardholder_id: int, today: date, *, category: str | None,
                   budget_id: int | None) -> Budget:
    budgets = _open_budgets(session, cardholder_id, today)
    if budget_id is not None:
        matching = [budget for budget in budgets if budget.id == budget_id]
    else:
        # The budget that ends first is spent first, so less money expires unused.
        matching = [budget for budget in budgets if budget.category == category]
        matching.sort(key=lambda budget: (budget.balance_cents == 0, budget.period_end, budget.id))
    if not matching:
        raise NoSuchBudget("this pass has no open budget of that kind")
    return matching[0]


def _display_name(vault: Vault, holder: Cardholder) -> str:
    first_names = vault.decrypt(holder.first_names_encrypted)
    if first_names and first_names.strip():
        return first_names.split()[0]
    return vault.decrypt(holder.initials_encrypted) or ""


def _age(vault: Vault, holder: Cardholder, today: date) -> int | None:
    birth_text = vault.decrypt(holder.birth_date_encrypted)
    if not birth_text:
        return None
    born = date.fromisoformat(birth_text)
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))
