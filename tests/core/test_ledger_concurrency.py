"""No budget below zero and one effect per idempotency key, under real concurrency.

Threads share one process's connection pool; the process test races separate
OS processes with their own engines, as gunicorn workers and hosts would.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from adapter import ledger
from adapter.db import Database
from adapter.models import EntryKind, LedgerEntry, Redemption
from tests import factories


def _redeem(db: Database, child: factories.ChildWithBudget, merchant_id: int, amount_cents: int,
            key: str | None = None) -> ledger.RedemptionOutcome:
    return ledger.redeem(db, ledger.RedemptionRequest(
        merchant_id=merchant_id, budget_id=child.budget_id, pass_id=child.pass_id,
        amount_cents=amount_cents, actor=f"merchant:{merchant_id}", idempotency_key=key))


def _redemption_entries(db: Database, budget_id: int) -> list[int]:
    with db.read() as session:
        return list(session.execute(select(LedgerEntry.amount_cents).where(
            LedgerEntry.budget_id == budget_id, LedgerEntry.kind == EntryKind.REDEMPTION)).scalars())


def test_fifty_threads_never_overspend(db, vault):
    child = factories.child_with_budget(db, vault, amount_cents=10_000)
    shop = factories.merchant(db)
    with ThreadPoolExecutor(max_workers=50) as pool:
        outcomes = list(pool.map(lambda _: _redeem(db, child, shop.merchant_id, 1_000), range(50)))

    statuses = [outcome.status for outcome in outcomes]
    assert statuses.count("redeemed") == 10
    assert statuses.count("insufficient_balance") == 40
    assert _redemption_entries(db, child.budget_id) == [-1_000] * 10
    with db.read() as session:
        assert ledger.balance_of(session, child.budget_id) == 0
        assert ledger.verify(session) == []


def test_same_key_twenty_times_has_one_effect(db, vault):
    child = factories.child_with_budget(db, vault, amount_cents=10_000)
    shop = factories.merchant(db)
    amounts = [1_500] * 18 + [2_500] * 2  # two clients reuse the key with another request

    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(pool.map(lambda amount: _redeem(db, child, shop.merchant_id, amount, "till-7-0001"),
                                 amounts))

    assert _redemption_entries(db, child.budget_id) == [-1_500]
    same_request = outcomes[:18]
    first = next(outcome for outcome in same_request if not outcome.replayed)
    assert first.status == "redeemed" and first.amount_cents == 1_500
    for outcome in same_request:
        assert (outcome.status, outcome.redemption_id, outcome.available_cents, outcome.created_at) == (
            first.status, first.redemption_id, first.available_cents, first.created_at)
    assert sum(1 for outcome in same_request if not outcome.replayed) == 1
    assert [outcome.status for outcome in outcomes[18:]] == ["idempotency_key_reused"] * 2


def _process_worker(database_url: str, budget_id: int, pass_id: int, merchant_id: int, start, results) -> None:
    db = Database(database_url)
    start.wait()
    child = factories.ChildWithBudget(0, pass_id, "", budget_id)
    for attempt in range(5):
        outcome = _redeem(db, child, merchant_id, 1_000)
        results.put(outcome.status)
    db.dispose()


def test_processes_racing_never_overspend(db, vault, database_url):
    child = factories.child_with_budget(db, vault, amount_cents=10_000)
    shop = factories.merchant(db)
    context = multiprocessing.get_context("spawn")
    start, results = context.Event(), context.Queue()
    workers = [context.Process(target=_process_worker,
                               args=(database_url, child.budget_id, child.pass_id, shop.merchant_id, start, results))
               for _ in range(6)]
    for worker in workers:
        worker.start()
    start.set()
    statuses = [results.get(timeout=120) for _ in range(30)]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0

    assert statuses.count("redeemed") == 10
    assert statuses.count("insufficient_balance") == 20
    with db.read() as session:
        assert session.execute(select(func.count()).select_from(Redemption)).scalar_one() == 10
        assert ledger.balance_of(session, child.budget_id) == 0
        assert ledger.verify(session) == []


def test_the_roll_over_closing_budgets_while_the_counter_spends_them_leaves_each_with_exactly_what_it_had(db, vault):
    """``expire_many`` locks a chunk of budgets, reads their balances and closes them, while payments on the same
    budgets run beside it: each budget must end expired at zero, its expiry entry taking exactly what the payments
    before it left, and no payment booked after it."""
    from adapter.models import Budget, BudgetStatus
    from tests.fixture_personal_data import TEST_BSNS

    children = [factories.child_with_budget(db, vault, amount_cents=10_000, bsn=TEST_BSNS[number % len(TEST_BSNS)])
                for number in range(12)]
    shop = factories.merchant(db)

    import threading

    first_paid = threading.Event()

    def spend(child: factories.ChildWithBudget) -> list[str]:
        statuses = []
        for _ in range(6):
            statuses.append(_redeem(db, child, shop.merchant_id, 700).status)
            first_paid.set()
        return statuses

    def roll_over() -> int:
        first_paid.wait(timeout=60)  # into the middle of the payments
        with db.write() as session:
            return ledger.expire_many(session, [child.budget_id for child in children], "rollover",
                                      note="period ended")

    with ThreadPoolExecutor(max_workers=13) as pool:
        spending = [pool.submit(spend, child) for child in children]
        closed = pool.submit(roll_over)
        statuses = [status for future in spending for status in future.result()]
    assert closed.result() == 12 and "redeemed" in statuses
    assert set(statuses) <= {"redeemed", "budget_not_open", "budget_not_found", "insufficient_balance"}, statuses
    with db.read() as session:
        assert ledger.verify(session) == []
        for child in children:
            budget = session.get(Budget, child.budget_id)
            assert (budget.status, budget.balance_cents) == (BudgetStatus.EXPIRED, 0)
            entries = session.execute(select(LedgerEntry.kind, LedgerEntry.amount_cents)
                                      .where(LedgerEntry.budget_id == child.budget_id)
                                      .order_by(LedgerEntry.id)).all()
            assert sum(amount for _kind, amount in entries) == 0
            # Nothing after the expiry: a payment that lost the race was refused, not booked on a closed budget.
            kinds = [kind for kind, _amount in entries]
            assert EntryKind.EXPIRY not in kinds[:-1] and kinds.count(EntryKind.EXPIRY) <= 1
