from __future__ import annotations

from datetime import date

import pytest

from adapter import counter
from adapter.models import Merchant, PassState
from tests import factories

TODAY = date(2026, 6, 1)


def _merchant(db, categories):
    issued = factories.merchant(db, categories=categories)
    with db.read() as session:
        return session.get(Merchant, issued.merchant_id)


def test_balance_shows_the_first_name_and_only_what_this_shop_may_redeem(db, vault):
    child = factories.child_with_budget(db, vault, amount_cents=7_500, category="school")
    with db.read() as session:
        view = counter.check_balance(session, vault, _merchant(db, ("school",)), child.pass_number, TODAY)
        elsewhere = counter.check_balance(session, vault, _merchant(db, ("clothing",)), child.pass_number, TODAY)
    assert (view.holder_name, view.pass_status) == ("Sanne", "active")
    assert [(b.category, b.available_cents) for b in view.budgets] == [("school", 7_500)]
    assert (elsewhere.holder_name, elsewhere.budgets) == ("Sanne", [])
    assert not hasattr(view, "age")  # a shop needs the child's first name to greet it, not its age


@pytest.mark.parametrize("state", [PassState.BLOCKED, PassState.REPLACED, PassState.EXPIRED])
def test_unusable_passes_look_like_unknown_ones(db, vault, state):
    child = factories.child_with_budget(db, vault, pass_state=state)
    shop = _merchant(db, ("school",))
    with db.read() as session:
        for pass_number in (child.pass_number, "6400999999999999", "abc"):
            with pytest.raises(counter.PassNotUsable) as caught:
                counter.check_balance(session, vault, shop, pass_number, TODAY)
            assert str(caught.value) == "pass not usable"


def test_pass_outside_its_validity_is_not_usable(db, vault):
    child = factories.child_with_budget(db, vault, period=(date(2025, 1, 1), date(2025, 12, 31)))
    shop = _merchant(db, ("school",))
    with db.read() as session, pytest.raises(counter.PassNotUsable):
        counter.check_balance(session, vault, shop, child.pass_number, TODAY)


def test_redeem_by_category_and_refuse_other_categories(db, vault):
    child = factories.child_with_budget(db, vault, amount_cents=5_000, category="school")
    allowed, other = _merchant(db, ("school",)), _merchant(db, ("sport",))
    outcome = counter.redeem(db, allowed, child.pass_number, 1_250, category="school", today=TODAY)
    assert (outcome.status, outcome.available_cents) == ("redeemed", 3_750)
    with pytest.raises(counter.CategoryNotAllowed):
        counter.redeem(db, other, child.pass_number, 100, category="school", today=TODAY)
    with pytest.raises(counter.NoSuchBudget):  # as an id of no budget: the shop is not told the child holds it
        counter.redeem(db, other, child.pass_number, 100, budget_id=child.budget_id, today=TODAY)
    with pytest.raises(counter.NoSuchBudget):
        counter.redeem(db, other, child.pass_number, 100, category="sport", today=TODAY)


def test_an_ended_period_is_spendable_through_the_expiry_grace_and_closed_by_the_rollover(db, vault):
    from datetime import timedelta

    from sqlalchemy import update

    from adapter import grants
    from adapter.models import Pass

    period_end = TODAY - timedelta(days=7)  # a late receipt, a week after the school year ended
    child = factories.child_with_budget(db, vault, amount_cents=4_000, period=(date(2025, 8, 1), period_end))
    not_started = factories.child_with_budget(db, vault, period=(TODAY + timedelta(days=1), date(2027, 7, 31)))
    with db.write() as session:  # the pass itself runs on into the next year
        session.execute(update(Pass).where(Pass.id.in_([child.pass_id, not_started.pass_id]))
                        .values(valid_from=date(2025, 8, 1), valid_until=date(2027, 7, 31)))
    shop = _merchant(db, ("school",))
    with db.read() as session:
        view = counter.check_balance(session, vault, shop, child.pass_number, TODAY, expiry_grace_days=14)
        assert counter.check_balance(session, vault, shop, not_started.pass_number, TODAY).budgets == []
    assert [(b.available_cents, b.expires_on) for b in view.budgets] == [(4_000, period_end + timedelta(days=14))]
    assert counter.redeem(db, shop, child.pass_number, 1_000, category="school", today=TODAY,
                          expiry_grace_days=14).succeeded

    with db.write() as session:  # the night after the grace: what is left expires
        assert grants.expire_ended(session, period_end + timedelta(days=15), grace_days=14) == 1
    with pytest.raises(counter.NoSuchBudget):
        counter.redeem(db, shop, child.pass_number, 100, category="school", today=period_end + timedelta(days=15),
                       expiry_grace_days=14)


def test_a_budget_past_its_last_day_is_neither_offered_nor_spent_before_the_rollover_closes_it(db, vault):
    """Between midnight and the night's roll-over, or while the scheduler is down, the budget is still OPEN."""
    from datetime import timedelta

    from sqlalchemy import func, select, update

    from adapter.models import Budget, BudgetStatus, LedgerEntry, Pass

    period_end = date(2026, 5, 1)
    child = factories.child_with_budget(db, vault, amount_cents=4_000, period=(date(2025, 8, 1), period_end))
    with db.write() as session:  # the pass itself runs on into the next year
        session.execute(update(Pass).where(Pass.id == child.pass_id)
                        .values(valid_from=date(2025, 8, 1), valid_until=date(2027, 7, 31)))
    shop = _merchant(db, ("school",))
    last_day = period_end + timedelta(days=14)
    with db.read() as session:
        assert [b.expires_on for b in counter.check_balance(session, vault, shop, child.pass_number, last_day,
                                                            expiry_grace_days=14).budgets] == [last_day]
    assert counter.redeem(db, shop, child.pass_number, 500, budget_id=child.budget_id, today=last_day,
                          expiry_grace_days=14).succeeded
    day_after = last_day + timedelta(days=1)
    with db.read() as session:
        assert counter.check_balance(session, vault, shop, child.pass_number, day_after,
                                     expiry_grace_days=14).budgets == []
    for chosen in ({"budget_id": child.budget_id}, {"category": "school"}):
        with pytest.raises(counter.NoSuchBudget):
            counter.redeem(db, shop, child.pass_number, 100, today=day_after, expiry_grace_days=14, **chosen)
        with pytest.raises(counter.NoSuchBudget):  # the same key and fingerprint path as the API's
            counter.redeem(db, shop, child.pass_number, 100, today=day_after, expiry_grace_days=14,
                           idempotency_key=f"late-{len(chosen)}-{sorted(chosen)[0]}", fingerprint="f", **chosen)
    with db.read() as session:
        budget = session.get(Budget, child.budget_id)
        assert (budget.status, budget.balance_cents) == (BudgetStatus.OPEN, 3_500)  # the roll-over has not run
        assert session.scalar(select(func.count()).select_from(LedgerEntry)
                              .where(LedgerEntry.budget_id == child.budget_id)) == 2  # the grant and the 5 euros


def test_the_runtime_reads_the_expiry_grace_from_the_budget_rules(tmp_path, sqlite_url):
    from adapter.runtime import Runtime
    from tests.conftest import make_settings

    assert Runtime(make_settings(tmp_path, sqlite_url)).expiry_grace_days == 14  # config/budgets.yaml
    assert Runtime(make_settings(tmp_path, sqlite_url, budgets=None)).expiry_grace_days == 0


def test_the_grace_follows_the_rules_file_and_a_failed_read_is_tried_again(tmp_path):
    """An API worker runs for weeks: a changed grace counts from the next request, and a rules file that could
    not be read once (no grace meanwhile) is read again, not remembered as 0 for the process's life."""
    import os

    from adapter.runtime import GraceDays

    rules = tmp_path / "budgets.yaml"
    rules.write_text("expiry_grace_days: 14\n", encoding="utf-8")
    now = [0.0]
    grace = GraceDays(rules, clock=lambda: now[0])
    assert grace.current() == 14
    rules.write_text("expiry_grace_days: 30\n", encoding="utf-8")
    os.utime(rules, ns=(1, 2_000_000_000))  # a changed file, whatever the file system's clock resolution
    assert grace.current() == 30
    broken, mended = "expiry_grace_days: [not a number\n", "expiry_grace_days: 7\n"
    rules.write_text(broken, encoding="utf-8")
    os.utime(rules, ns=(1, 3_000_000_000))
    assert grace.current() == 0  # unreadable: no grace
    rules.write_text(mended.rstrip("\n").ljust(len(broken) - 1) + "\n", encoding="utf-8")
    os.utime(rules, ns=(1, 3_000_000_000))  # the same stamp and size: only the retry finds it
    assert grace.current() == 0
    now[0] = GraceDays.RETRY_SECONDS + 1
    assert grace.current() == 7
    assert GraceDays(None).current() == 0
