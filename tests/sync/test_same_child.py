"""The budget follows the child, not the card: a child re-issued under a new person number keeps one set of budgets.

A source may re-issue a child under a new cardholder id with a new pass (the household moved, the vendor
re-imported). The BSN blind index says it is the same child: the existing cardholder is re-keyed, its
budgets and ledger stay, and the old pass stops working at the counter.
"""

from __future__ import annotations

import dataclasses
from datetime import date

import pytest
from sqlalchemy import func, select, update

from adapter import counter, ledger
from adapter.models import Budget, Cardholder, Merchant, Pass, PassState
from adapter.records import CardholderRecord
from adapter.settings import SyncSettings
from adapter.sync import run_sync
from tests import factories
from tests.sync.records import SYNC_SETTINGS, TEST_BSNS
from tests.sync.records import SIMPLE_RULES as RULES

TODAY = date(2026, 11, 30)
CHILD = CardholderRecord(source_key="line 2", household_id="H001", cardholder_id="P001",
                         pass_number="6400000000000011", bsn=TEST_BSNS[0], first_names="Noah", surname="Bakker",
                         birth_date=date(2017, 1, 30), valid_from=date(2026, 1, 1), valid_until=date(2027, 7, 31),
                         is_child=True)
SIBLING = dataclasses.replace(CHILD, source_key="line 3", cardholder_id="P002", pass_number="6400000000000029",
                              bsn=TEST_BSNS[1], first_names="Yasmina")


# Two children make every rejected record a large share: the mass-change guard is not what these tests are about.
LENIENT = SyncSettings(max_change_share=1.0)


def _sync(db, vault, records, today=TODAY, settings=SYNC_SETTINGS):
    result = run_sync(db, vault, "gemeente", records, settings=settings, rules=RULES, today=today)
    assert result.ok, result.reason
    return result


def _shop(db) -> Merchant:
    issued = factories.merchant(db, categories=("school", "clothing"))
    with db.read() as session:
        return session.get(Merchant, issued.merchant_id)


def _budgets_by_holder(db) -> dict[str, list[tuple[str, int]]]:
    with db.read() as session:
        rows = session.execute(select(Cardholder.source_key, Budget.rule_code, Budget.granted_cents)
                               .join(Budget, Budget.cardholder_id == Cardholder.id)
                               .order_by(Cardholder.source_key, Budget.rule_code)).all()
    found: dict[str, list[tuple[str, int]]] = {}
    for key, code, cents in rows:
        found.setdefault(key, []).append((code, cents))
    return found


def test_a_child_reissued_under_a_new_person_number_keeps_one_set_of_budgets(db, vault):
    _sync(db, vault, [CHILD, SIBLING])
    shop = _shop(db)
    assert counter.redeem(db, shop, CHILD.pass_number, 2_500, category="school", today=TODAY).succeeded

    moved = dataclasses.replace(CHILD, household_id="H777", cardholder_id="P777", pass_number="6400000000000888")
    second = _sync(db, vault, [moved, SIBLING])
    assert second.budgets_granted == 0

    budgets = _budgets_by_holder(db)
    assert sorted(budgets) == ["P002", "P777"]  # P001's row now carries the new person number
    assert budgets["P777"] == [("clothing", 15_000), ("school-primary", 12_500)]
    with db.read() as session:
        assert session.execute(select(func.count()).select_from(Cardholder)).scalar_one() == 2
        # Still findable by its BSN: a later re-issue is recognised again.
        assert session.execute(select(Cardholder.bsn_index).where(Cardholder.source_key == "P777")).scalar_one() \
            == vault.blind_index(CHILD.bsn)
        old = session.execute(select(Pass).where(Pass.pass_number == CHILD.pass_number)).scalar_one()
        new = session.execute(select(Pass).where(Pass.pass_number == moved.pass_number)).scalar_one()
        assert (old.status, old.replaced_by_id, old.cardholder_id) == (PassState.REPLACED, new.id, new.cardholder_id)
        with pytest.raises(counter.PassNotUsable):
            counter.check_balance(session, vault, shop, CHILD.pass_number, TODAY)
        view = counter.check_balance(session, vault, shop, moved.pass_number, TODAY)
        assert ledger.verify(session) == []
    assert {budget.category: budget.available_cents for budget in view.budgets} == {
        "school": 12_500 - 2_500, "clothing": 15_000}
    with pytest.raises(counter.PassNotUsable):
        counter.redeem(db, shop, CHILD.pass_number, 100, category="clothing", today=TODAY)
    assert counter.redeem(db, shop, moved.pass_number, 10_000, category="school", today=TODAY).succeeded

    # The next nights change nothing back and grant nothing.
    third = _sync(db, vault, [moved, SIBLING], today=date(2026, 12, 1))
    assert (third.budgets_granted, third.missing, third.created, third.updated) == (0, 0, 0, 0)


def test_two_cardholders_with_one_bsn_in_one_export_do_not_both_get_budgets(db, vault):
    twin = dataclasses.replace(CHILD, source_key="line 4", cardholder_id="P003", pass_number="6400000000000037",
                               first_names="Noa")
    result = _sync(db, vault, [CHILD, SIBLING, twin], settings=LENIENT)
    assert result.rejected == 1
    assert result.rejected_sample == [
        ("line 4", "bsn: duplicate BSN in this export; another cardholder has the same BSN")]
    assert sorted(_budgets_by_holder(db)) == ["P001", "P002"]
    with db.read() as session:
        assert session.execute(select(Pass).where(Pass.pass_number == twin.pass_number)).scalar_one_or_none() is None


def test_an_existing_cardholder_wins_over_a_newcomer_with_its_bsn_in_the_same_export(db, vault):
    _sync(db, vault, [CHILD, SIBLING])
    newcomer = dataclasses.replace(CHILD, source_key="line 1", cardholder_id="P777", pass_number="6400000000000888")
    result = _sync(db, vault, [newcomer, CHILD, SIBLING], settings=LENIENT)  # the newcomer comes first in the file
    assert result.rejected == 1 and result.rejected_sample[0][0] == "line 1"
    assert sorted(_budgets_by_holder(db)) == ["P001", "P002"]
    with db.read() as session:
        old = session.execute(select(Pass).where(Pass.pass_number == CHILD.pass_number)).scalar_one()
        assert old.status == PassState.ACTIVE


@pytest.mark.parametrize("changed_first", [False, True])
def test_a_known_cardholder_that_takes_another_known_ones_bsn_loses_to_whichever_comes_first(db, vault,
                                                                                             changed_first):
    # Both are known: the first line in the file keeps the BSN, the other is refused (its rows stay as they were).
    _sync(db, vault, [CHILD, SIBLING])
    taken = dataclasses.replace(SIBLING, bsn=CHILD.bsn)
    lines = [taken, CHILD] if changed_first else [CHILD, taken]
    result = _sync(db, vault, [dataclasses.replace(line, source_key=f"line {n}") for n, line in enumerate(lines)],
                   settings=LENIENT)
    assert result.rejected_sample == [("line 1", "bsn: duplicate BSN in this export; another cardholder has the "
                                                 "same BSN")]


@pytest.mark.parametrize("older_first", [False, True])
def test_two_stored_cardholders_with_one_bsn_the_second_in_the_file_is_refused(db, vault, older_first):
    # Stored before duplicates were refused (say): the sibling's row carries the child's BSN index.
    _sync(db, vault, [CHILD, SIBLING])
    with db.write() as session:
        shared = session.execute(select(Cardholder.bsn_index).where(Cardholder.source_key == "P001")).scalar_one()
        session.execute(update(Cardholder).where(Cardholder.source_key == "P002").values(bsn_index=shared))
    lines = [CHILD, SIBLING] if older_first else [SIBLING, CHILD]
    result = _sync(db, vault, [dataclasses.replace(line, source_key=f"line {n}") for n, line in enumerate(lines)],
                   settings=LENIENT)
    assert (result.unchanged, result.rejected) == (1, 1)
    assert result.rejected_sample[0][0] == "line 1"


def test_a_newcomer_after_the_known_cardholder_with_its_bsn_is_refused(db, vault):
    _sync(db, vault, [CHILD, SIBLING])
    newcomer = dataclasses.replace(CHILD, source_key="line 9", cardholder_id="P777", pass_number="6400000000000888")
    result = _sync(db, vault, [CHILD, SIBLING, newcomer], settings=LENIENT)  # the known one comes first
    assert result.rejected_sample == [("line 9", "bsn: duplicate BSN in this export; another cardholder has the "
                                                 "same BSN")]
    assert sorted(_budgets_by_holder(db)) == ["P001", "P002"]


def test_a_refused_newcomers_lines_are_rejected_and_leave_no_trace_in_the_plan(db, vault):
    """A newcomer claims a stored child's BSN, comes first in the file with two lines (one carries a stored
    pass of another child, one replaces the claimed child's pass), and then the claimed child is in the export
    itself: the claim is refused. Its lines are rejected in file order, after the plan has already judged them
    as read, and none of them counts: not as carrying the stored pass, nor as replacing a pass."""
    from adapter.sync_plan import DUPLICATE_BSN

    _sync(db, vault, [CHILD, SIBLING])
    carries_sibling_pass = dataclasses.replace(CHILD, source_key="line 1", cardholder_id="P777",
                                               pass_number=SIBLING.pass_number)
    replaces_child_pass = dataclasses.replace(CHILD, source_key="line 2", cardholder_id="P777",
                                              pass_number="6400000000000888", replaces_pass_number=CHILD.pass_number)
    unrelated = dataclasses.replace(SIBLING, source_key="line 5", cardholder_id="P900", bsn=TEST_BSNS[5],
                                    pass_number="6400000000000999")
    # Two rejected lines and a missing pass out of two known passes: past any guard, so forced.
    result = run_sync(db, vault, "gemeente", [carries_sibling_pass, replaces_child_pass,
                                              dataclasses.replace(CHILD, source_key="line 3"), unrelated],
                      settings=LENIENT, rules=RULES, today=TODAY, force=True)
    assert result.ok, result.reason

    assert result.rejected_sample == [("line 1", DUPLICATE_BSN), ("line 2", DUPLICATE_BSN)]
    with db.read() as session:
        child_pass = session.execute(select(Pass).where(Pass.pass_number == CHILD.pass_number)).scalar_one()
        sibling_pass = session.execute(select(Pass).where(Pass.pass_number == SIBLING.pass_number)).scalar_one()
        refused_pass = session.execute(select(Pass).where(Pass.pass_number == "6400000000000888")).scalar_one_or_none()
        unrelated_owner = session.execute(select(Cardholder.source_key).join(Pass, Pass.cardholder_id == Cardholder.id)
                                          .where(Pass.pass_number == unrelated.pass_number)).scalar_one()
    assert child_pass.status == PassState.ACTIVE and child_pass.replaced_by_id is None  # the refused line replaced nothing
    assert sibling_pass.missing_since == TODAY  # its only line was refused: it went missing from the export
    assert refused_pass is None
    assert unrelated_owner == "P900"
