"""Ledger rules one at a time: grants, partial redemptions, reversals, expiry, verify."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import event, select, text, update
from sqlalchemy.exc import DBAPIError

from adapter import grants, ledger
from adapter.models import Budget, BudgetStatus, EntryKind, LedgerEntry, Redemption, Reversal
from tests import factories


def _request(child, merchant_id, amount_cents, **extra):
    return ledger.RedemptionRequest(merchant_id=merchant_id, budget_id=child.budget_id, pass_id=child.pass_id,
                                    amount_cents=amount_cents, actor="test", **extra)


def test_partial_redemption_takes_what_is_there(db, vault):
    child = factories.child_with_budget(db, vault, amount_cents=2_500)
    shop = factories.merchant(db)
    outcome = ledger.redeem(db, _request(child, shop.merchant_id, 4_000, allow_partial=True))
    assert (outcome.status, outcome.amount_cents, outcome.remaining_to_pay_cents, outcome.available_cents) == (
        "redeemed", 2_500, 1_500, 0)


def test_insufficient_balance_reports_what_is_available(db, vault):
    child = factories.child_with_budget(db, vault, amount_cents=2_500)
    shop = factories.merchant(db)
    outcome = ledger.redeem(db, _request(child, shop.merchant_id, 4_000))
    assert (outcome.status, outcome.available_cents, outcome.remaining_to_pay_cents) == (
        "insufficient_balance", 2_500, 1_500)


def test_reversals_never_exceed_the_redemption(db, vault):
    child = factories.child_with_budget(db, vault, amount_cents=5_000)
    shop = factories.merchant(db)
    redeemed = ledger.redeem(db, _request(child, shop.merchant_id, 3_000))

    def reverse(amount_cents=None, merchant_id=shop.merchant_id):
        return ledger.reverse(db, ledger.ReversalRequest(
            merchant_id=merchant_id, redemption_id=redeemed.redemption_id, amount_cents=amount_cents,
            reason="verkeerd artikel", actor="test"))

    assert reverse(1_000).available_cents == 3_000
    assert reverse(2_500).status == "reversal_exceeds_redemption"
    assert reverse(merchant_id=shop.merchant_id + 999).status == "redemption_not_found"
    rest = reverse()
    assert (rest.status, rest.amount_cents, rest.reversible_cents, rest.available_cents) == ("reversed", 2_000, 0, 5_000)
    assert reverse(1).status == "reversal_exceeds_redemption"
    with db.read() as session:
        assert ledger.verify(session) == []


def test_reversal_window_closes(db, vault):
    child = factories.child_with_budget(db, vault, amount_cents=5_000)
    shop = factories.merchant(db)
    redeemed = ledger.redeem(db, _request(child, shop.merchant_id, 3_000))
    outcome = ledger.reverse(db, ledger.ReversalRequest(
        merchant_id=shop.merchant_id, redemption_id=redeemed.redemption_id, reason="te laat", actor="test",
        window=timedelta(seconds=-1)))
    assert outcome.status == "reversal_window_closed"


def test_expiry_empties_the_budget_and_a_later_reversal_goes_back_to_the_municipality(db, vault):
    child = factories.child_with_budget(db, vault, amount_cents=5_000)
    shop = factories.merchant(db)
    redeemed = ledger.redeem(db, _request(child, shop.merchant_id, 1_000))
    with db.write() as session:
        assert ledger.expire(session, child.budget_id, actor="rollover")
        assert not ledger.expire(session, child.budget_id, actor="rollover")  # closed: nothing more leaves
    with db.read() as session:
        assert session.execute(select(LedgerEntry.amount_cents).where(
            LedgerEntry.budget_id == child.budget_id, LedgerEntry.kind == EntryKind.EXPIRY)).scalars().all() == [-4_000]
    assert ledger.redeem(db, _request(child, shop.merchant_id, 100)).status == "budget_not_open"
    reversal = ledger.reverse(db, ledger.ReversalRequest(
        merchant_id=shop.merchant_id, redemption_id=redeemed.redemption_id, reason="retour", actor="test"))
    assert (reversal.status, reversal.returned_to_budget, reversal.available_cents) == ("reversed", False, 0)
    with db.read() as session:
        assert ledger.balance_of(session, child.budget_id) == 0
        assert ledger.verify(session) == []


def test_the_rollover_closes_a_whole_period_in_a_few_statements_each_budget_with_what_it_had_left(db, vault):
    """The end of a school year closes every school-year and pass-year budget of the city on one night. Closed
    one by one, three statements each, 50,000 of them held SQLite's write lock for three minutes of the
    roll-over; a city's 400,000 for half an hour. Each still leaves with exactly what it had left."""
    child = factories.child_with_budget(db, vault, amount_cents=5_000, period=(date(2025, 8, 1), date(2026, 7, 31)))
    shop = factories.merchant(db)
    ledger.redeem(db, _request(child, shop.merchant_id, 1_000))
    spent = factories.child_with_budget(db, vault, amount_cents=700, period=(date(2025, 8, 1), date(2026, 7, 31)))
    ledger.redeem(db, _request(spent, shop.merchant_id, 700))
    running = factories.child_with_budget(db, vault, amount_cents=900, period=(date(2026, 8, 1), date(2027, 7, 31)))
    with db.write() as session:
        ledger.open_budgets(session, [
            ledger.NewBudget(child.cardholder_id, "sport", "Sport", 1, "sport", f"pass-{number}", date(2025, 8, 1),
                             date(2026, 7, 31), 100 + number) for number in range(1_200)], actor="test")
    statements: list[str] = []

    def count(_connection, _cursor, statement, *_args):  # type: ignore[no-untyped-def]
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        with db.write() as session:
            assert grants.expire_ended(session, date(2026, 8, 15), grace_days=14) == 1_202
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert len(statements) < 30, f"{len(statements)} statements for 1,202 budgets"
    with db.read() as session:
        budgets = dict(session.execute(select(Budget.id, Budget.status)).all())
        assert budgets.pop(running.budget_id) == BudgetStatus.OPEN
        assert set(budgets.values()) == {BudgetStatus.EXPIRED}
        expired = session.execute(select(LedgerEntry.budget_id, LedgerEntry.amount_cents, LedgerEntry.note)
                                  .where(LedgerEntry.kind == EntryKind.EXPIRY)).all()
        assert len(expired) == 1_201  # the spent budget had nothing left to expire
        assert (child.budget_id, -4_000, "period ended") in expired
        assert sum(amount for _, amount, _ in expired) == -(4_000 + sum(100 + number for number in range(1_200)))
        assert ledger.verify(session) == []
    with db.write() as session:  # a second roll-over finds nothing left to do
        assert grants.expire_ended(session, date(2026, 8, 16), grace_days=14) == 0


def test_correction_cannot_push_below_zero(db, vault):
    child = factories.child_with_budget(db, vault, amount_cents=1_000)
    with db.write() as session:
        ledger.correct(session, child.budget_id, -400, actor="operator", reason="dubbel toegekend")
    with pytest.raises(ledger.LedgerError), db.write() as session:
        ledger.correct(session, child.budget_id, -700, actor="operator", reason="te veel")
    with db.read() as session:
        assert ledger.balance_of(session, child.budget_id) == 600


def test_an_expired_budget_takes_no_correction(db, vault):
    child = factories.child_with_budget(db, vault, amount_cents=1_000)
    with db.write() as session:
        ledger.expire(session, child.budget_id, "rollover", note="period ended")
    with pytest.raises(ledger.LedgerError, match="is expired: what was left went back to the municipality"), \
            db.write() as session:
        ledger.correct(session, child.budget_id, 500, actor="operator", reason="te weinig toegekend")
    with db.read() as session:
        assert ledger.balance_of(session, child.budget_id) == 0 and ledger.verify(session) == []


@pytest.mark.parametrize("bad_amount", [0, -5, 1.5, True])
def test_amounts_are_positive_whole_cents(db, vault, bad_amount):
    child = factories.child_with_budget(db, vault)
    with pytest.raises(ledger.LedgerError):
        ledger.redeem(db, _request(child, 1, bad_amount))


def test_verify_names_a_budget_whose_balance_disagrees(db, vault):
    child = factories.child_with_budget(db, vault, amount_cents=1_000)
    with db.write() as session:
        session.execute(update(Budget).where(Budget.id == child.budget_id).values(balance_cents=1_500))
    with db.read() as session:
        mismatches = ledger.verify(session)
    assert [m.budget_id for m in mismatches] == [child.budget_id]
    assert "1500" in mismatches[0].problem and "1000" in mismatches[0].problem


def test_verify_names_a_redemption_or_reversal_row_that_no_longer_says_what_its_entry_booked(db, vault):
    """The settlement pays shops what the redemption and reversal rows say, and those rows (unlike the entries)
    can be changed: a row edited after the fact must be named before anyone settles, though every balance
    still equals its entries."""
    child = factories.child_with_budget(db, vault, amount_cents=5_000)
    shop_id = factories.merchant(db).merchant_id
    redeemed = ledger.redeem(db, _request(child, shop_id, 1_000))
    reversed_ = ledger.reverse(db, ledger.ReversalRequest(merchant_id=shop_id, redemption_id=redeemed.redemption_id,
                                                          reason="retour", actor="test", amount_cents=300))
    with db.read() as session:
        assert ledger.verify(session) == []
    with db.write() as session:
        session.execute(update(Redemption).where(Redemption.id == redeemed.redemption_id).values(amount_cents=9_000))
        session.execute(update(Reversal).where(Reversal.id == reversed_.reversal_id).values(amount_cents=30))
    with db.read() as session:
        problems = [mismatch.problem for mismatch in ledger.verify(session)]
    assert any(f"redemption {redeemed.redemption_id}: 9000 cents" in problem and "booked 1000" in problem
               for problem in problems), problems
    assert any(f"reversal {reversed_.reversal_id}: 30 cents" in problem and "booked 300" in problem
               for problem in problems), problems


@pytest.mark.parametrize("statement", [
    "UPDATE ledger_entries SET amount_cents = 1", "DELETE FROM ledger_entries"])
def test_ledger_entries_cannot_be_changed_or_deleted(db, vault, statement):
    factories.child_with_budget(db, vault, amount_cents=1_000)
    with pytest.raises(DBAPIError, match="append-only"), db.write() as session:
        session.execute(text(statement))
    with db.read() as session:
        assert session.query(LedgerEntry).count() == 1


def test_database_refuses_a_negative_balance_even_past_the_ledger(db, vault):
    child = factories.child_with_budget(db, vault, amount_cents=1_000)
    with pytest.raises(DBAPIError), db.write() as session:
        session.execute(update(Budget).where(Budget.id == child.budget_id).values(balance_cents=-1))
