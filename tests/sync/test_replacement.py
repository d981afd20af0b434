"""A lost pass replaced by a new number: the child's balance works on the new number only."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import select

from adapter import counter
from adapter.models import Merchant, Pass, PassState
from adapter.records import PassStatus
from adapter.sync import run_sync
from tests import factories
from tests.sync.records import SIMPLE_RULES, SYNC_SETTINGS, TODAY, household_records


def _sync(db, vault, records):
    result = run_sync(db, vault, "gemeente", records, settings=SYNC_SETTINGS, rules=SIMPLE_RULES, today=TODAY)
    assert result.ok, result.reason
    return result


def _shop(db):
    issued = factories.merchant(db, categories=("school", "clothing"))
    with db.read() as session:
        return session.get(Merchant, issued.merchant_id)


@pytest.mark.parametrize("how", ["replaces_pass_number", "old_pass_status_replaced_and_dropped"])
def test_remaining_balance_moves_to_the_new_number_only(db, vault, how):
    records = household_records(10)
    child_index = next(i for i, record in enumerate(records) if record.is_child)
    child = records[child_index]
    _sync(db, vault, records)
    shop = _shop(db)
    spent = counter.redeem(db, shop, child.pass_number, 2_000, category="clothing", today=TODAY)
    assert spent.succeeded

    new_number = "6499999999000001"
    replaced = list(records)
    if how == "replaces_pass_number":
        replaced[child_index] = dataclasses.replace(child, pass_number=new_number,
                                                    replaces_pass_number=child.pass_number)
    else:
        replaced[child_index] = dataclasses.replace(child, pass_status=PassStatus.REPLACED)
        replaced.append(dataclasses.replace(child, pass_number=new_number, source_key="line 999"))
    _sync(db, vault, replaced)

    with db.read() as session:
        old = session.execute(select(Pass).where(Pass.pass_number == child.pass_number)).scalar_one()
        new = session.execute(select(Pass).where(Pass.pass_number == new_number)).scalar_one()
        assert old.status == PassState.REPLACED and new.status == PassState.ACTIVE
        assert old.cardholder_id == new.cardholder_id
        if how == "replaces_pass_number":
            assert old.replaced_by_id == new.id
        with pytest.raises(counter.PassNotUsable):
            counter.check_balance(session, vault, shop, child.pass_number, TODAY)
        view = counter.check_balance(session, vault, shop, new_number, TODAY)
    clothing = [budget for budget in view.budgets if budget.category == "clothing"]
    assert [budget.available_cents for budget in clothing] == [15_000 - 2_000]
    with pytest.raises(counter.PassNotUsable):
        counter.redeem(db, shop, child.pass_number, 100, category="clothing", today=TODAY)
    assert counter.redeem(db, shop, new_number, 13_000, category="clothing", today=TODAY).succeeded

    # The next night, with the old number gone from the export, nothing changes back.
    again = [record for record in replaced if record.pass_number != child.pass_number]
    result = _sync(db, vault, again)
    assert result.missing == 0 and result.budgets_granted == 0
    with db.read() as session, pytest.raises(counter.PassNotUsable):
        counter.check_balance(session, vault, shop, child.pass_number, TODAY)


@pytest.mark.parametrize("old_line_first", [True, False])
def test_an_unchanged_line_of_a_pass_that_another_line_replaces_is_replaced(db, vault, old_line_first):
    # Some exports keep listing the lost card as active for a night beside the new one that names it.
    records = household_records(10)
    child = next(record for record in records if record.is_child)
    _sync(db, vault, records)

    new_line = dataclasses.replace(child, pass_number="6499999999000002", replaces_pass_number=child.pass_number,
                                   source_key="line 999")
    night = [*records, new_line] if old_line_first else [new_line, *records]
    result = _sync(db, vault, night)
    assert (result.created, result.updated, result.unchanged) == (1, 1, len(records) - 1)
    assert "line 999" in [key for key, _detail in result.samples["created"]]
    assert child.source_key in [key for key, _detail in result.samples["updated"]]
    assert child.source_key not in [key for key, _detail in result.samples.get("unchanged", [])]
    with db.read() as session:
        old = session.execute(select(Pass).where(Pass.pass_number == child.pass_number)).scalar_one()
        new = session.execute(select(Pass).where(Pass.pass_number == new_line.pass_number)).scalar_one()
        assert old.status == PassState.REPLACED and old.replaced_by_id == new.id

    again = _sync(db, vault, night)
    assert (again.created, again.updated, again.unchanged) == (0, 0, len(night))
