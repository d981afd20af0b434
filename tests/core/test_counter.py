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
