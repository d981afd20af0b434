"""A first sync gives new cardholders and households the ids it reserved, by the order of their inserts: every
pass, birth date and household must reach its own child, also when the reserved ids are not one unbroken run (PostgreSQL's shared
sequence, when another writer took numbers meanwhile)."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import select

import adapter.sync as sync
from adapter.models import Budget, Cardholder, Household, Pass
from adapter.rules import PassFacts
from adapter.sync import run_sync
from tests.sync.records import SIMPLE_RULES, SYNC_SETTINGS, TODAY, household_records


def _with_second_passes(records):  # type: ignore[no-untyped-def]
    """Every third child gets a second pass, on a line at the end of the export, far from its first."""
    children = [record for record in records if record.is_child][::3]
    extra = [dataclasses.replace(child, source_key=f"extra {number}", pass_number=f"77{number:08d}")
             for number, child in enumerate(children)]
    return records + extra


@pytest.mark.parametrize("ids", ["one run", "scattered"])
def test_each_pass_and_birth_date_reaches_its_own_new_cardholder(db, vault, monkeypatch, ids):
    records = _with_second_passes(household_records(150))
    taken: dict[str, list[int]] = {}
    if ids == "scattered":
        reserve = sync.reserve_ids

        def scattered(session, table, count, **options):  # type: ignore[no-untyped-def]
            # Every third of three times as many: ids with gaps, ascending, as a list.
            taken[table.name] = list(reserve(session, table, 3 * count, **options))[::3]
            return taken[table.name]

        monkeypatch.setattr(sync, "reserve_ids", scattered)
    result = run_sync(db, vault, "gemeente", records, settings=SYNC_SETTINGS, rules=SIMPLE_RULES, today=TODAY)
    assert result.created == len(records) and result.rejected == 0

    with db.read() as session:
        key_by_id = dict(session.execute(select(Cardholder.id, Cardholder.source_key)).all())
        household_of = dict(session.execute(select(Cardholder.source_key, Household.source_key)
                                            .join(Household, Household.id == Cardholder.household_id)).all())
        household_ids = session.execute(select(Household.id)).scalars().all()
        holder_of_pass = {number: key_by_id[holder_id] for number, holder_id in
                          session.execute(select(Pass.pass_number, Pass.cardholder_id)).all()}
        budgets = {(key_by_id[holder_id], code): cents for holder_id, code, cents in
                   session.execute(select(Budget.cardholder_id, Budget.rule_code, Budget.granted_cents)).all()}
    if ids == "scattered":  # the gaps were really there
        assert sorted(key_by_id) == taken["cardholders"] and taken["cardholders"][1] - taken["cardholders"][0] == 3
        assert sorted(household_ids) == taken["households"] and taken["households"][1] - taken["households"][0] == 3
    assert holder_of_pass == {record.pass_number: record.cardholder_id for record in records}
    # Each cardholder in its own household, found by the number of the household's insert.
    assert household_of == {record.cardholder_id: record.household_id for record in records}

    # What each child is entitled to by its own birth date and passes, worked out from the rules alone.
    passes_of: dict[str, list[PassFacts]] = {}
    for record in records:
        passes_of.setdefault(record.cardholder_id, []).append(
            PassFacts(record.pass_status.value, record.valid_from, record.valid_until))
    expected = {}
    for record in {record.cardholder_id: record for record in records}.values():
        for rule, period in SIMPLE_RULES.current(TODAY):
            cents = rule.entitlement_cents(period, record.birth_date, record.is_child, passes_of[record.cardholder_id])
            if cents > 0:
                expected[(record.cardholder_id, rule.code)] = cents
    assert len({code for _key, code in expected}) == 3  # children of every age group, so a mix-up shows
    assert budgets == expected


def test_a_rekeyed_child_and_a_moved_pass_between_new_cardholders_with_scattered_ids(db, vault, monkeypatch):
    """A re-keyed child keeps its row id and has no number among the new ones; a stored pass moving to a new
    cardholder goes to that cardholder's reserved id. With gaps between the ids, an off-by-one shows."""
    from tests.sync.test_same_child import CHILD, LENIENT, SIBLING

    run_sync(db, vault, "gemeente", [CHILD, SIBLING], settings=SYNC_SETTINGS, rules=SIMPLE_RULES, today=TODAY)
    reserve = sync.reserve_ids
    monkeypatch.setattr(sync, "reserve_ids", lambda session, table, count, **options: [
        first + 5 * number + 2 for first in [reserve(session, table, 5 * count, **options)[0]]
        for number in range(count)])
    first_new = dataclasses.replace(SIBLING, source_key="line 1", cardholder_id="N1", bsn=None,
                                    pass_number="6400000000000101")
    rekeyed = dataclasses.replace(CHILD, source_key="line 2", cardholder_id="P777", pass_number="6400000000000888")
    second_new = dataclasses.replace(SIBLING, source_key="line 4", cardholder_id="N2", bsn=None,
                                     pass_number="6400000000000202")
    moved = dataclasses.replace(first_new, source_key="line 5", pass_number=SIBLING.pass_number)
    result = run_sync(db, vault, "gemeente", [first_new, rekeyed, second_new, moved], settings=LENIENT,
                      rules=SIMPLE_RULES, today=TODAY)
    assert result.ok, result.reason

    with db.read() as session:
        owner = dict(session.execute(select(Pass.pass_number, Cardholder.source_key)
                                     .join(Cardholder, Cardholder.id == Pass.cardholder_id)).all())
    assert owner == {"6400000000000101": "N1", "6400000000000888": "P777", "6400000000000202": "N2",
                     SIBLING.pass_number: "N1", CHILD.pass_number: "P777"}
