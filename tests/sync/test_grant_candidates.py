"""Which children the nightly grants judge: every active one under new rules or periods, else those the sync changed."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta

import pytest
from sqlalchemy import delete, event, select, update

from adapter import first_load, grants
from adapter.grants import GrantJudgement
from adapter.models import Budget, Cardholder, HolderStatus, Pass, PassState
from adapter.records import CardholderRecord, PassStatus
from adapter.rules import rules_from_mapping
from adapter.settings import SyncSettings
from adapter.sync import run_sync
from tests.sync.records import SIMPLE_RULES, TODAY, household_records

SOURCE = "gemeente"
# A handful of cardholders: one leaving is a large share; the mass-change guard is not what this is about.
LENIENT = SyncSettings(max_change_share=1.0, grace_nights=2)


def _sync(db, vault, records, today):  # type: ignore[no-untyped-def]
    result = run_sync(db, vault, SOURCE, records, settings=LENIENT, rules=SIMPLE_RULES, today=today)
    assert result.ok, result.reason
    return result


@pytest.fixture
def judged(monkeypatch) -> list[set[int]]:  # type: ignore[no-untyped-def]
    """The ids of the children each grant run judged, a set per run."""
    runs: list[set[int]] = []
    slices = grants._candidate_slices

    def watched(session, ids, written):  # type: ignore[no-untyped-def]
        runs.append(set())
        for holders in slices(session, ids, written):
            runs[-1].update(holder_id for holder_id, _, _ in holders)
            yield holders

    monkeypatch.setattr(grants, "_candidate_slices", watched)
    return runs


def _ids(db, source=SOURCE, *, active_only: bool = True) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Cardholder key -> row id."""
    with db.read() as session:
        return dict(session.execute(select(Cardholder.source_key, Cardholder.id).where(
            Cardholder.source == source, *([Cardholder.status == HolderStatus.ACTIVE] if active_only else []))).all())


def _judged_under(db, source=SOURCE) -> str | None:  # type: ignore[no-untyped-def]
    with db.read() as session:
        return session.execute(select(GrantJudgement.rules_key).where(GrantJudgement.source == source)).scalar()


def _judged_at(db, source=SOURCE):  # type: ignore[no-untyped-def]
    with db.read() as session:
        return session.execute(select(GrantJudgement.judged_at).where(GrantJudgement.source == source)).scalar()


def test_the_active_cardholders_the_sync_names_are_those_the_database_holds_after_its_writes(db, vault, monkeypatch,
                                                                                              judged):
    handed: list[tuple[list[int], set[int]]] = []
    original = grants.grant_budgets

    def checked(session, *args, active_holders=None, **kwargs):  # type: ignore[no-untyped-def]
        stored = set(session.execute(select(Cardholder.id).where(
            Cardholder.source == SOURCE, Cardholder.status == HolderStatus.ACTIVE)).scalars())
        handed.append((list(active_holders), stored))
        return original(session, *args, active_holders=active_holders, **kwargs)

    monkeypatch.setattr(grants, "grant_budgets", checked)
    first = household_records(6)
    changed = dataclasses.replace(first[1], surname="de Vries")
    # The same child (same BSN) under a new person number and a new pass: the stored row is re-keyed.
    rekeyed = dataclasses.replace(first[2], cardholder_id="H999999-K1", pass_number="6499999999")
    newcomers = household_records(2, start=100)
    leaving = first[4]
    second = [first[0], changed, rekeyed, first[3], *first[5:], *newcomers]
    assert leaving not in second
    nights = [(first, TODAY), (second, TODAY + timedelta(days=1)), (second, TODAY + timedelta(days=2)),
              (second, TODAY + timedelta(days=4)),  # past the grace nights: the leaver is deactivated
              ([*second, leaving], TODAY + timedelta(days=5)),  # back in the export
              ([*second, leaving], TODAY + timedelta(days=300))]  # other periods: every child is judged again
    for records, today in nights:
        _sync(db, vault, records, today)
        assert _judged_under(db) == SIMPLE_RULES.fingerprint(today)
    assert len(handed) == len(judged) == len(nights)
    ids = _ids(db, active_only=False)
    assert rekeyed.cardholder_id in ids and first[2].cardholder_id not in ids
    for active_holders, stored in handed:
        # Each once (a child judged twice is judged wrong), ascending (the grants take them in id order).
        assert active_holders == sorted(stored)
    statuses = [len(stored) for _, stored in handed]
    assert statuses[2] == statuses[3] == statuses[4] - 1  # the leaver missing, then inactive, then back
    # Judged: every child on the first night; then only those written (changed, re-keyed, new, back); under
    # the next year's periods every active one again.
    of = [ids[record.cardholder_id] for record in (changed, rekeyed, *newcomers)]
    assert judged[0] == handed[0][1] and len(judged[0]) == len(first)
    assert judged[1] == set(of)
    assert judged[2] == judged[3] == set()
    assert judged[4] == {ids[leaving.cardholder_id]}
    assert judged[5] == handed[5][1]


def test_a_source_judged_under_other_rules_or_never_has_every_active_child_judged_again_once(db, vault, judged):
    records = household_records(4)
    _sync(db, vault, records, TODAY)
    everyone = set(_ids(db).values())
    for lost in ("other rules", "no judgement"):
        with db.write() as session:
            if lost == "other rules":
                session.execute(update(GrantJudgement).values(rules_key="judged under other rules"))
            else:
                session.execute(delete(GrantJudgement))
        result = _sync(db, vault, records, TODAY + timedelta(days=1))
        assert (result.created, result.updated) == (0, 0)
        judged_at = _judged_at(db)
        unchanged_night = _sync(db, vault, records, TODAY + timedelta(days=2))
        assert (unchanged_night.created, unchanged_night.updated) == (0, 0)
        assert judged[-2:] == [everyone, set()], lost
        assert _judged_at(db) == judged_at, "an unchanged night writes no judgement"
        assert _judged_under(db) == SIMPLE_RULES.fingerprint(TODAY + timedelta(days=2))


def test_a_night_without_budget_rules_has_the_next_night_with_rules_judge_every_child(db, vault, judged):
    """No rules judge the children a night changes: the night after, with rules again, judges every one
    (a child changed that night, judged then, could otherwise be missed)."""
    records = household_records(4)
    _sync(db, vault, records, TODAY)
    other = run_sync(db, vault, "other", household_records(2, start=50), settings=LENIENT, rules=SIMPLE_RULES,
                     today=TODAY)
    assert other.ok
    changed = [dataclasses.replace(records[1], surname="de Vries"), *records[:1], *records[2:]]
    without = run_sync(db, vault, SOURCE, changed, settings=LENIENT, rules=None, today=TODAY + timedelta(days=1))
    assert without.ok and without.updated == 1
    assert _judged_under(db) is None
    assert _judged_under(db, "other") == SIMPLE_RULES.fingerprint(TODAY), "another source keeps its judgement"
    _sync(db, vault, changed, TODAY + timedelta(days=2))
    assert judged[-1] == set(_ids(db).values())


def test_the_grants_judge_the_changed_children_that_are_active_when_they_are_not_told_who_is_active(db, vault):
    records = household_records(6)
    _sync(db, vault, records, TODAY)
    ids = _ids(db)
    children = [ids[record.cardholder_id] for record in records if record.is_child]
    with db.write() as session:
        session.execute(update(Cardholder).where(Cardholder.id == children[0]).values(status=HolderStatus.INACTIVE))
        summary = grants.grant_budgets(session, vault, SIMPLE_RULES, TODAY, source=SOURCE,
                                       changed=[children[2], children[0], children[1], children[2], 10_000])
    # The inactive child and an id of nobody are passed over; the one named twice is judged once.
    assert summary.children_judged == 2


def test_the_grants_read_no_personal_token_of_a_child_whose_record_the_sync_just_read(db, vault):
    """A first sync knows every birth date (it read them from the source): the encrypted tokens it just wrote
    are not read back. A night under new periods judges children it did not read: their tokens are read."""
    token_reads: list[str] = []

    def watch(_connection, _cursor, statement, *_args):  # type: ignore[no-untyped-def]
        # (Not the blind-index key's check at each run's start, adapter.key_match, which reads a few tokens.)
        if statement.lstrip().upper().startswith("SELECT") and "cardholders.personal_encrypted" in statement \
                and "cardholders.bsn_index IS NOT NULL" not in statement:
            token_reads.append(statement)

    records = household_records(6)
    event.listen(db.engine, "before_cursor_execute", watch)
    try:
        first = _sync(db, vault, records, TODAY)
        assert first.budgets_granted > 0 and token_reads == []
        # Nearly a year on, under new periods, every child is judged again. Only the changed record's birth
        # date comes from that night's export; the others' come from their tokens, read in one slice.
        changed = dataclasses.replace(records[1], surname="de Vries")
        later = _sync(db, vault, [records[0], changed, *records[2:]], TODAY + timedelta(days=300))
    finally:
        event.remove(db.engine, "before_cursor_execute", watch)
    assert later.budgets_granted > 0 and len(token_reads) == 1


@pytest.mark.parametrize("checked_at_end", [False, True], ids=["row_by_row", "first_load_checked_at_end"])
def test_the_grants_judge_the_children_the_sync_just_wrote_without_reading_them_back_and_alike(db, vault,
                                                                                                monkeypatch,
                                                                                                checked_at_end):
    """The sync knows the child flag and birth date of every cardholder it wrote: the grants read no slice of
    those back, and grant exactly what reading them back grants (the same first sync, of a second source).
    Also as a first load of a city's size is written: keys checked at the end, passes before cardholders."""
    if checked_at_end:
        monkeypatch.setattr(first_load, "CHECK_AT_END_FROM", 1)
    # Flags of every kind: children, adults, cardholders without a flag (judged by age alone), and children
    # of school age the source says are no children (no budget: a flag lost on the way would grant one).
    def flagged(record: CardholderRecord) -> CardholderRecord:
        household = int(record.household_id[1:])
        if household % 4 == 1:
            return dataclasses.replace(record, is_child=None)
        return dataclasses.replace(record, is_child=False) if household % 4 == 2 and record.is_child else record

    # Passes of every kind too: blocked ones, ones that ended before the periods or start within them (a
    # share of the amount), and children with a second pass, some replacing their first: a pass noted for
    # the wrong child, or a replaced one counted as active, would grant otherwise than the stored passes do.
    def with_pass_facts(record: CardholderRecord) -> CardholderRecord:
        household = int(record.household_id[1:])
        if household % 5 == 3:
            return dataclasses.replace(record, pass_status=PassStatus.BLOCKED)
        if household % 6 == 4:
            return dataclasses.replace(record, valid_until=date(2026, 7, 31))
        if household % 7 == 5:
            return dataclasses.replace(record, valid_from=date(2026, 10, 1))
        return record

    def second_passes(children: list[CardholderRecord]) -> list[CardholderRecord]:
        return [dataclasses.replace(child, source_key=f"extra {number}", pass_number=f"77{number:08d}",
                                    pass_status=PassStatus.ACTIVE, valid_from=date(2026, 9, 1), valid_until=None,
                                    replaces_pass_number=child.pass_number if number % 2 else None)
                for number, child in enumerate(children)]

    records = [with_pass_facts(flagged(record)) for record in household_records(40)]
    records += second_passes([record for record in records if record.is_child][::3])
    assert {record.is_child for record in records} == {True, False, None}
    assert any(record.is_child is False and record.birth_date.year > 2010 for record in records)
    holder_reads: list[str] = []
    pass_reads: list[str] = []

    def watch(_connection, _cursor, statement, *_args):  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("SELECT") and "cardholders.is_child" in statement:
            holder_reads.append(statement)
        if statement.lstrip().upper().startswith("SELECT") and "passes.valid_until" in statement:
            pass_reads.append(statement)

    event.listen(db.engine, "before_cursor_execute", watch)
    try:
        known = _sync(db, vault, records, TODAY)
        assert holder_reads == [] and pass_reads == []
        # The second source's grants are not told what was written: they read every slice back.
        original = grants.grant_budgets
        monkeypatch.setattr(grants, "grant_budgets",
                            lambda *args, written=None, **kwargs: original(*args, **kwargs))
        other = [dataclasses.replace(record, cardholder_id=f"B{record.cardholder_id}",
                                     household_id=f"B{record.household_id}", pass_number=f"65{record.pass_number[2:]}",
                                     replaces_pass_number=record.replaces_pass_number and
                                     f"65{record.replaces_pass_number[2:]}")
                 for record in records]
        read_back = run_sync(db, vault, "other", other, settings=LENIENT, rules=SIMPLE_RULES, today=TODAY)
    finally:
        event.remove(db.engine, "before_cursor_execute", watch)
    assert read_back.ok and holder_reads and pass_reads
    with db.read() as session:
        budgets = session.execute(select(Cardholder.source, Cardholder.source_key, Budget.rule_code, Budget.period_key,
                                         Budget.granted_cents).join(Budget, Budget.cardholder_id == Cardholder.id)).all()
    granted = {source: {(key.removeprefix("B"), *rest) for row_source, key, *rest in budgets if row_source == source}
               for source in (SOURCE, "other")}
    with db.read() as session:
        states = set(session.scalars(select(Pass.status).distinct()))
    assert {state.value for state in states} == {"active", "blocked", "replaced"}
    assert known.budgets_granted == read_back.budgets_granted == len(granted[SOURCE]) > 10
    assert granted[SOURCE] == granted["other"]


def test_a_child_whose_pass_alone_changed_or_that_a_stored_pass_moved_to_is_judged_again(db, vault, judged):
    """Eligibility depends on the passes too: a child whose record is as stored but whose pass changed is
    judged again, and so is a child a stored pass moved to. The others are not."""
    records = household_records(20)
    _sync(db, vault, records, TODAY)
    children = [record for record in records if record.is_child]
    blocked, receiving, giving = children[0], children[1], children[2]

    next_night = [dataclasses.replace(record, pass_status=PassStatus.BLOCKED) if record is blocked
                  else dataclasses.replace(record, cardholder_id=receiving.cardholder_id) if record is giving
                  else record for record in records]
    _sync(db, vault, next_night, TODAY + timedelta(days=1))

    id_of = _ids(db)
    assert judged[-1] == {id_of[blocked.cardholder_id], id_of[receiving.cardholder_id]}


def test_the_owner_of_a_pass_replaced_while_the_export_no_longer_lists_it_is_judged_again(db, vault, judged):
    """A rule may count a replaced pass. A pass the export drops while a listed pass names it as replaced is
    marked replaced by the sync alone, with no write of its owner's: the owner is judged again all the same.
    (Found in review; the per-child judgements before missed it too.)"""
    rules = rules_from_mapping({"rules": [
        {"code": "clothing", "name": "Kleding", "amount_cents": 15_000, "min_age": 0, "max_age": 17,
         "period": "calendar_year", "pass_statuses": ["active", "replaced"]}]})
    records = household_records(4)
    at = next(index for index, record in enumerate(records) if record.is_child)
    child = records[at]
    # Blocked, though valid on the reference day (1 January); its successor is active but valid from June only.
    old = dataclasses.replace(child, pass_status=PassStatus.BLOCKED)
    new = dataclasses.replace(child, pass_number="6499999999000001", source_key="line 999", valid_from=date(2026, 6, 1))
    others = [*records[:at], *records[at + 1:]]
    first = run_sync(db, vault, SOURCE, [*others, old, new], settings=LENIENT, rules=rules, today=TODAY)
    holder_id = _ids(db)[child.cardholder_id]

    def clothing() -> list[int]:
        with db.read() as session:
            return session.scalars(select(Budget.granted_cents).where(Budget.cardholder_id == holder_id)).all()

    assert first.ok and clothing() == []  # the blocked pass does not count, the new one starts too late
    # The next night the export lists the new pass as replacing the old one, and the old one no more.
    second = run_sync(db, vault, SOURCE, [*others, dataclasses.replace(new, replaces_pass_number=old.pass_number)],
                      settings=LENIENT, rules=rules, today=TODAY + timedelta(days=1))
    with db.read() as session:
        assert session.scalar(select(Pass.status).where(Pass.pass_number == old.pass_number)) == PassState.REPLACED
    assert second.ok and holder_id in judged[-1] and clothing() == [15_000]


def test_the_active_ids_come_ascending_whatever_order_the_snapshot_and_the_new_ids_are_in():
    """New ids come after the stored ones as a rule; when they do not (ids reserved from a sequence others
    draw on too), the two are merged."""
    from adapter.sync import _active_after, _WrittenHolders
    from adapter.sync_plan import Plan
    from adapter.sync_snapshot import KnownHolder, Snapshot

    holders = {f"K{holder_id}": KnownHolder(holder_id, None, status, None)
               for holder_id, status in [(50, HolderStatus.ACTIVE), (3, HolderStatus.ACTIVE),
                                         (10, HolderStatus.INACTIVE), (7, HolderStatus.ACTIVE),
                                         (40, HolderStatus.MISSING)]}
    snapshot = Snapshot("gemeente", {}, holders, {}, frozenset(), None)
    with Plan("gemeente", holders_missing=[7]) as plan:
        for new_ids, expected in [(range(20, 23), [3, 10, 20, 21, 22, 40, 50]), (range(60, 62), [3, 10, 40, 50, 60, 61]),
                                  ([], [3, 10, 40, 50])]:
            written = _WrittenHolders(new_ids=new_ids, facts=None, existing_ids=[40, 10])  # type: ignore[arg-type]
            assert list(_active_after(snapshot, plan, written)) == expected
        # A first sync: nothing stored, and the new ids' own range is handed over, not a copy of every id.
        first = Snapshot("gemeente", {}, {}, {}, frozenset(), None)
        new_ids = range(1, 1_000_001)
        assert _active_after(first, plan, _WrittenHolders(new_ids=new_ids, facts=None)) is new_ids  # type: ignore[arg-type]
