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


def test_balance_shows_first_name_age_and_what_this_shop_may_redeem(db, vault):
    child = factories.child_with_budget(db, vault, amount_cents=7_500, category="school")
    shop = _merchant(db, ("clothing",))
    with db.read() as session:
        view = counter.check_balance(session, vault, shop, child.pass_number, TODAY)
    assert (view.holder_name, view.age, view.pass_status) == ("Sanne", 11, "active")
    assert [(b.category, b.available_cents, b.redeemable_here) for b in view.budgets] == [("school", 7_500, False)]


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
        counter.redeem(db, other, child.pass_number, 100, budget_id=child.budget_id, today=TODAY)
    with pytest.raises(counter.NoSuchBudget):
        counter.redeem(db, allowed, child.pass_number, 100, category="sport", today=TODAY)


def test_an_ended_period_is_spendable_through_the_expiry_grace_until_the_rollover_closes_it(db, vault):
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
    assert counter.redeem(db, shop, child.pass_number, 1_000, category="school", today=TODAY).succeeded

    with db.write() as session:  # the night after the grace: what is left expires
        assert grants.expire_ended(session, period_end + timedelta(days=15), grace_days=14) == 1
    with pytest.raises(counter.NoSuchBudget):
        counter.redeem(db, shop, child.pass_number, 100, category="school", today=period_end + timedelta(days=15))


def test_the_runtime_reads_the_expiry_grace_from_the_budget_rules(tmp_path, sqlite_url):
    from adapter.runtime import Runtime
    from tests.conftest import make_settings

    assert Runtime(make_settings(tmp_path, sqlite_url)).expiry_grace_days == 14  # config/budgets.yaml
    assert Runtime(make_settings(tmp_path, sqlite_url, budgets=None)).expiry_grace_days == 0
