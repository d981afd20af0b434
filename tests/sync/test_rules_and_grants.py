"""Budget rules as data and the automatic grants: reference dates, periods, top-ups, expiry, idempotency."""

from __future__ import annotations

import dataclasses
from datetime import date

import pytest
import yaml
from sqlalchemy import func, select

from adapter import grants, ledger
from adapter.models import Budget, BudgetStatus, Cardholder, EntryKind, LedgerEntry
from adapter.records import CardholderRecord, PassStatus
from adapter.rules import PassFacts, RulesError, age_on, load_rules, rules_from_mapping
from adapter.sync import run_sync
from tests.sync.records import SYNC_SETTINGS, TEST_BSNS

PRIMARY = {"code": "primary", "name": "Basisschool", "amount_cents": 10_000, "category": "school",
           "min_age": 4, "max_age": 11, "period": "school_year"}
SECONDARY = {"code": "secondary", "name": "Voortgezet", "amount_cents": 20_000, "category": "school",
             "min_age": 12, "max_age": 17, "period": "school_year"}


def _rules(*rules, **top):
    return rules_from_mapping({"rules": list(rules), **top})


def _child(key: str, birth_date: date, *, valid_from=date(2026, 1, 1), valid_until=date(2028, 12, 31),
           number: int = 0) -> CardholderRecord:
    return CardholderRecord(source_key=f"line {number + 2}", household_id=f"H-{key}", cardholder_id=key,
                            pass_number=f"640000{number:06d}", bsn=TEST_BSNS[number] if number < len(TEST_BSNS) else None,
                            first_names="Sam", surname="Bakker", birth_date=birth_date, valid_from=valid_from,
                            valid_until=valid_until, is_child=True)


def _sync(db, vault, records, rules, today):
    result = run_sync(db, vault, "gemeente", records, settings=SYNC_SETTINGS, rules=rules, today=today)
    assert result.ok, result.reason
    return result


def _budgets(db):
    with db.read() as session:
        return session.execute(select(Budget.rule_code, Budget.period_key, Budget.granted_cents, Budget.balance_cents,
                                      Budget.status).order_by(Budget.period_key, Budget.rule_code)).all()


def _entries(db) -> int:
    with db.read() as session:
        return session.execute(select(func.count()).select_from(LedgerEntry)).scalar_one()


def test_age_is_judged_on_the_reference_date_a_day_later_is_the_younger_band(db, vault):
    rules = _rules(PRIMARY, SECONDARY)  # school year: reference date 1 August
    twelve_on_the_day = _child("a", date(2014, 8, 1), number=1)
    twelve_the_day_after = _child("b", date(2014, 8, 2), number=2)
    _sync(db, vault, [twelve_on_the_day, twelve_the_day_after], rules, date(2026, 9, 1))
    with db.read() as session:
        by_child = dict(session.execute(
            select(Budget.cardholder_id, Budget.rule_code).order_by(Budget.cardholder_id)).all())
    assert sorted(by_child.values()) == ["primary", "secondary"]
    assert list(by_child.values()) == ["secondary", "primary"]  # a first, b second
    assert age_on(date(2014, 8, 2), date(2026, 8, 1)) == 11


def test_school_year_turns_over_between_31_july_and_1_august(db, vault):
    rules = _rules(PRIMARY, SECONDARY)
    child = _child("a", date(2015, 8, 1))  # 11 on 1 Aug 2026, 12 on 1 Aug 2027
    _sync(db, vault, [child], rules, date(2027, 7, 31))
    assert [(code, key) for code, key, *_ in _budgets(db)] == [("primary", "2026-2027")]
    _sync(db, vault, [child], rules, date(2027, 8, 1))
    assert [(code, key, status) for code, key, _, _, status in _budgets(db)] == [
        ("primary", "2026-2027", BudgetStatus.OPEN), ("secondary", "2027-2028", BudgetStatus.OPEN)]


def test_a_higher_amount_mid_period_tops_up_and_a_lower_one_takes_nothing(db, vault):
    child = _child("a", date(2018, 3, 3))
    _sync(db, vault, [child], _rules(PRIMARY), date(2026, 9, 1))
    with db.read() as session:
        budget_id = session.execute(select(Budget.id)).scalar_one()
    with db.write() as session:
        ledger.correct(session, budget_id, -2_500, "test", "spent at the counter (stand-in)")

    raised = _rules({**PRIMARY, "amount_cents": 12_000, "version": 2})
    result = _sync(db, vault, [child], raised, date(2026, 10, 1))
    assert result.budgets_granted == 1
    assert _budgets(db) == [("primary", "2026-2027", 12_000, 12_000 - 2_500, BudgetStatus.OPEN)]
    with db.read() as session:
        grants_made = session.execute(select(LedgerEntry.amount_cents).where(LedgerEntry.kind == EntryKind.GRANT)
                                      .order_by(LedgerEntry.id)).scalars().all()
        version = session.execute(select(Budget.rule_version)).scalar_one()
    assert (grants_made, version) == ([10_000, 2_000], 2)

    lowered = _rules({**PRIMARY, "amount_cents": 5_000, "version": 3})
    entries = _entries(db)
    assert _sync(db, vault, [child], lowered, date(2026, 11, 1)).budgets_granted == 0
    assert _entries(db) == entries
    assert _budgets(db) == [("primary", "2026-2027", 12_000, 9_500, BudgetStatus.OPEN)]


def test_what_is_left_expires_at_the_period_end_after_the_grace_days(db, vault):
    _sync(db, vault, [_child("a", date(2018, 3, 3))], _rules(PRIMARY), date(2026, 9, 1))
    with db.write() as session:
        assert grants.expire_ended(session, date(2027, 7, 31), grace_days=0) == 0
        assert grants.expire_ended(session, date(2027, 8, 14), grace_days=14) == 0
    with db.write() as session:
        assert grants.expire_ended(session, date(2027, 8, 15), grace_days=14) == 1
    assert _budgets(db) == [("primary", "2026-2027", 10_000, 0, BudgetStatus.EXPIRED)]
    with db.read() as session:
        expiry = session.execute(select(LedgerEntry.amount_cents).where(LedgerEntry.kind == EntryKind.EXPIRY)
                                 ).scalar_one()
        assert expiry == -10_000
        assert ledger.verify(session) == []
    with db.write() as session:  # a second roll-over finds nothing left to do
        assert grants.expire_ended(session, date(2027, 8, 16), grace_days=14) == 0


def test_running_the_grants_again_creates_nothing(db, vault):
    rules = _rules(PRIMARY, SECONDARY)
    records = [_child(f"c{n}", date(2010 + n % 12, 1 + n % 12, 1 + n % 28), number=n) for n in range(40)]
    first = _sync(db, vault, records, rules, date(2026, 9, 1))
    assert first.budgets_granted > 0
    before = (_budgets(db), _entries(db))
    with db.write() as session:
        assert grants.grant_budgets(session, vault, rules, date(2026, 9, 2), source="gemeente").children_judged == 0
        # Even when every child is judged again, nothing is granted twice.
        with db.read() as reader:
            ids = [holder_id for (holder_id,) in reader.execute(select(Budget.cardholder_id)).all()]
        again = grants.grant_budgets(session, vault, rules, date(2026, 9, 2), source="gemeente", changed=ids)
    assert again.children_judged == len(set(ids)) and again.budgets_opened == again.budgets_topped_up == 0
    assert (_budgets(db), _entries(db)) == before


def test_a_once_rule_is_granted_once_per_child_and_pro_rata_counts_days_left(db, vault):
    start = {"code": "start-vo", "name": "Start VO", "amount_cents": 40_000, "min_age": 12, "max_age": 13,
             "period": "school_year", "once": True}
    prorata = {**PRIMARY, "code": "late", "min_age": 0, "max_age": 17, "amount_cents": 36_500, "pro_rata": True}
    rules = _rules(start, prorata)
    early = _child("a", date(2014, 1, 1), number=1)
    late = _child("b", date(2014, 1, 1), valid_from=date(2027, 2, 1), number=2)
    _sync(db, vault, [early, late], rules, date(2026, 9, 1))
    _sync(db, vault, [early, late], rules, date(2027, 9, 1))  # 13 now: still in the band, but once is once
    with db.read() as session:
        rows = session.execute(select(Budget.cardholder_id, Budget.rule_code, Budget.period_key,
                                      Budget.granted_cents).order_by(Budget.cardholder_id, Budget.period_key,
                                                                     Budget.rule_code)).all()
    early_id, late_id = sorted({row.cardholder_id for row in rows})
    early_rows = [(code, key, cents) for holder, code, key, cents in rows if holder == early_id]
    assert early_rows == [("late", "2026-2027", 36_500), ("late", "2027-2028", 36_500),
                          ("start-vo", "once", 40_000)]
    # Joined 1 Feb 2027: 181 of the 365 days of the school year are left; the once-rule wants the
    # pass on the reference date, so only the pro-rata budget, then full amounts the year after.
    late_rows = [(code, key, cents) for holder, code, key, cents in rows if holder == late_id]
    assert late_rows == [("late", "2026-2027", 36_500 * 181 // 365), ("late", "2027-2028", 36_500),
                         ("start-vo", "once", 40_000)]


def test_every_problem_in_a_rules_file_is_reported_at_once_with_its_key_path(tmp_path):
    path = tmp_path / "budgets.yaml"
    path.write_text(
        "rules:\n"
        "  - {code: a, name: A, amount_cents: 12.5, period: calendar_year}\n"            # not whole cents
        "  - {code: b, name: B, amount_cents: 100, period: school_year, min_age: 12, max_age: 4}\n"
        "  - {code: a, name: C, amount_cents: 100, period: explicit}\n"                    # duplicate, no dates
        "  - {code: d, name: D, amount_cents: 100, period: weekly, colour: red}\n",
        encoding="utf-8")
    with pytest.raises(RulesError) as caught:
        load_rules(path)
    problems = caught.value.problems
    assert any(p.startswith("rules.0.amount_cents:") for p in problems)
    assert any(p.startswith("rules.1:") and "min_age 12 is above max_age 4" in p for p in problems)
    assert any(p.startswith("rules.2.code:") and "already used by rules.0" in p for p in problems)
    assert any(p.startswith("rules.2:") and "explicit period needs" in p for p in problems)
    assert any(p.startswith("rules.3.period:") for p in problems)
    assert any(p.startswith("rules.3.colour: unknown key") for p in problems)


def test_the_checked_in_budget_rules_are_valid():
    from pathlib import Path

    rules = load_rules(Path(__file__).resolve().parents[2] / "config" / "budgets.yaml")
    assert len({rule.code for rule in rules.rules}) == len(rules.rules) >= 4
    assert all(period.contains(date(2026, 11, 30)) for _, period in rules.current(date(2026, 11, 30)))


def test_explicit_periods_and_reference_dates():
    rules = _rules({"code": "x", "name": "X", "amount_cents": 1, "period": "explicit", "starts": "2026-03-01",
                    "ends": "2026-06-30", "reference": "04-01"},
                   {"code": "p", "name": "P", "amount_cents": 1, "period": "pass_year", "reference": "07-01"},
                   pass_year_starts="09-01")
    explicit, pass_year = rules.rules
    assert explicit.period_on(date(2026, 2, 28), "09-01") is None
    period = explicit.period_on(date(2026, 3, 1), "09-01")
    assert (period.key, explicit.reference_date(period)) == ("2026-03-01..2026-06-30", date(2026, 4, 1))
    period = pass_year.period_on(date(2026, 8, 31), "09-01")
    assert (period.start, period.end, pass_year.reference_date(period)) == (
        date(2025, 9, 1), date(2026, 8, 31), date(2026, 7, 1))
    assert dataclasses.replace(period).days == 365


def test_children_judged_in_slices_get_what_one_slice_would_give_them(db, vault, tmp_path, monkeypatch):
    """Grants judge children a slice of ids at a time (memory stays flat); slice edges change nothing,
    also on a second night whose raised amount is granted from birth dates read back from the tokens."""
    from adapter.db import Database
    from adapter.migrate import upgrade

    children = [_child(f"c{number}", date(2010 + number % 9, 1 + number % 12, 1), number=number)
                for number in range(11)]
    first_rules, raised_rules = _rules(PRIMARY, SECONDARY), _rules(PRIMARY, {**SECONDARY, "amount_cents": 25_000})
    whole = Database(f"sqlite:///{tmp_path / 'one-slice.db'}")
    upgrade(whole)
    try:
        _sync(whole, vault, children, first_rules, date(2026, 9, 1))
        expected_top_ups = _sync(whole, vault, children, raised_rules, date(2026, 9, 2)).budgets_granted
        expected = _budgets(whole)
    finally:
        whole.dispose()
    monkeypatch.setattr(grants, "_JUDGE_SLICE", 3)
    _sync(db, vault, children, first_rules, date(2026, 9, 1))
    second = _sync(db, vault, children, raised_rules, date(2026, 9, 2))
    assert second.budgets_granted == expected_top_ups > 0
    assert _budgets(db) == expected and len(expected) == 11
    with db.read() as session:
        assert not ledger.verify(session)


@pytest.mark.parametrize("sparse_below", [1, grants._SPARSE_BELOW, 10**9])
def test_a_few_children_spread_over_the_ids_are_judged_by_their_ids_or_their_range_alike(db, vault, monkeypatch,
                                                                                      sparse_below):
    """A changed night judges a few children far apart: read by their ids (sparse_below 1), or by the range
    between them (10**9): the same budgets either way, and the children in between are left as they were."""
    monkeypatch.setattr(grants, "_SPARSE_BELOW", sparse_below)
    too_young, school_age = date(2023, 1, 1), date(2018, 1, 1)
    children = [_child(f"c{number:02d}", too_young if number in (0, 11) else school_age, number=number)
                for number in range(12)]
    rules = _rules(PRIMARY)
    _sync(db, vault, children, rules, date(2026, 9, 1))
    # The source corrects two birth dates, the first child's and the last one's.
    corrected = [dataclasses.replace(child, birth_date=school_age) if child.cardholder_id in ("c00", "c11")
                 else child for child in children]
    assert _sync(db, vault, corrected, rules, date(2026, 9, 2)).budgets_granted == 2
    with db.read() as session:
        granted = dict(session.execute(select(Cardholder.source_key, func.count(Budget.id))
                                       .outerjoin(Budget, Budget.cardholder_id == Cardholder.id)
                                       .group_by(Cardholder.source_key)).all())
    assert granted == {child.cardholder_id: 1 for child in children}


def test_children_judged_together_get_what_each_is_entitled_to_on_its_own(db, vault):
    """The grants judge each combination of ages and pass facts once for many children (rules.age_days). Rules
    with reference dates of their own, age bands, a pro-rata rule and passes starting later: every child of a
    slice gets exactly what ``Rule.entitlement_cents`` gives it alone."""
    rules = _rules(
        {"code": "young", "name": "Jong", "amount_cents": 9_000, "min_age": 0, "max_age": 3, "period": "calendar_year"},
        PRIMARY,  # school year, its age taken on 1 August
        {"code": "teen", "name": "Tiener", "amount_cents": 12_000, "min_age": 12, "max_age": 17,
         "period": "calendar_year", "reference": "10-01", "pro_rata": True})
    today = date(2026, 11, 30)
    # Birth dates on and around every birthday that matters (1 Jan, 1 Aug, 1 Oct) over 20 years, passes valid
    # from the start of the year or from a later day (pro rata).
    birth_dates = [date(year, month, day) for year in range(2006, 2027) for month, day in
                   ((1, 1), (1, 2), (7, 31), (8, 1), (8, 2), (9, 30), (10, 1), (10, 2), (12, 31)) if
                   date(year, month, day) <= today]
    children = [_child(f"c{number:03d}", born, number=number,
                       valid_from=date(2026, 1, 1) if number % 3 else date(2026, 10, 15))
                for number, born in enumerate(birth_dates)]
    _sync(db, vault, children, rules, today)
    running = rules.current(today)
    expected = {}
    for child in children:
        card = PassFacts("active", child.valid_from, child.valid_until)
        for rule, period in running:
            cents = rule.entitlement_cents(period, child.birth_date, True, [card])
            if cents > 0:
                expected[(child.cardholder_id, rule.code)] = cents
    with db.read() as session:
        granted = {(key, code): cents for key, code, cents in session.execute(
            select(Cardholder.source_key, Budget.rule_code, Budget.granted_cents)
            .join(Budget, Budget.cardholder_id == Cardholder.id)).all()}
    assert granted == expected
    assert {code for _, code in expected} == {"young", "primary", "teen"}
    assert len(set(expected.values())) > 3  # pro-rata amounts among them


@pytest.mark.parametrize("key, value", [("pass_year_starts", "02-29"), ("pass_year_starts", "04-31"),
                                        ("reference", "02-30"), ("reference", "02-29")])
def test_a_month_day_that_is_not_in_every_year_is_refused_when_the_rules_are_read(tmp_path, key, value):
    """Else `config check` said ok and every sync failed with "day is out of range for month"."""
    rule = {"code": "school", "name": "School", "amount_cents": 100, "period": "pass_year"}
    raw = {"pass_year_starts": value, "rules": [rule]} if key == "pass_year_starts" else \
        {"rules": [{**rule, "reference": value}]}
    path = tmp_path / "budgets.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(RulesError, match=f"{value} is not a day of every year"):
        load_rules(path)


def test_a_rules_file_that_cannot_be_read_is_a_rules_error_that_says_so(tmp_path):
    unreadable = tmp_path / "budgets.yaml"
    unreadable.write_bytes("pass_year_starts: '08-01'  # caf\xe9".encode("cp1252"))
    with pytest.raises(RulesError, match="not UTF-8 text"):
        load_rules(unreadable)
    with pytest.raises(RulesError, match="cannot be read"):
        load_rules(tmp_path)  # a directory


@pytest.mark.parametrize("pro_rata", [False, True])
def test_a_child_whose_lost_card_was_replaced_gets_the_top_up_and_a_new_rule_like_any_other(db, vault, pro_rata):
    """The budget follows the child, not the card. The new card is valid from the day it was issued, after the
    reference date (1 August); the lost one, now 'replaced', was the child's pass that day. Without it a raised
    amount topped up every child but this one, and a rule added mid-year gave it nothing (or a pro-rata share)."""
    primary = {**PRIMARY, "pro_rata": pro_rata}
    winter = {**PRIMARY, "code": "winter", "name": "Winterkleding", "amount_cents": 5_000, "pro_rata": pro_rata}
    lost = _child("a", date(2018, 3, 3), valid_from=date(2026, 1, 1), valid_until=date(2028, 7, 31), number=1)
    other = _child("b", date(2018, 3, 3), valid_from=date(2026, 1, 1), valid_until=date(2028, 7, 31), number=2)
    _sync(db, vault, [lost, other], _rules(primary), date(2026, 8, 1))
    new_card = dataclasses.replace(lost, pass_number="6400009999", replaces_pass_number=lost.pass_number,
                                   valid_from=date(2026, 10, 1))
    _sync(db, vault, [new_card, other], _rules(primary), date(2026, 10, 1))

    _sync(db, vault, [new_card, other], _rules({**primary, "amount_cents": 12_000, "version": 2}, winter),
          date(2026, 11, 1))
    with db.read() as session:
        granted = session.execute(select(Cardholder.source_key, Budget.rule_code, Budget.granted_cents)
                                  .join(Budget, Budget.cardholder_id == Cardholder.id)
                                  .order_by(Cardholder.source_key, Budget.rule_code)).all()
        assert ledger.verify(session) == []
    assert granted == [("a", "primary", 12_000), ("a", "winter", 5_000),
                       ("b", "primary", 12_000), ("b", "winter", 5_000)]


def test_a_replaced_card_counts_only_beside_a_card_that_qualifies_now():
    """A lost card stands in for the child's pass on its days only while the child holds a card the rule takes:
    a child whose new card is blocked gets nothing new from the old one."""
    rule = _rules(PRIMARY).rules[0]
    period = rule.period_on(date(2026, 11, 1), "08-01")
    old = PassFacts("replaced", date(2026, 1, 1), date(2028, 7, 31))
    assert rule.entitlement_cents(period, date(2018, 3, 3), True,
                                  [old, PassFacts("active", date(2026, 10, 1), date(2028, 7, 31))]) == 10_000
    assert rule.entitlement_cents(period, date(2018, 3, 3), True,
                                  [old, PassFacts("blocked", date(2026, 10, 1), date(2028, 7, 31))]) == 0
    assert rule.entitlement_cents(period, date(2018, 3, 3), True, [old]) == 0


def test_a_once_rule_raised_the_next_year_tops_up_nothing_in_last_years_grace_days(db, vault):
    """A once-rule's budget of last school year is still open in the grace days after 31 July. Raised then, the
    rule topped that old budget up: money the child had days to spend and had already had its once of."""
    start = {"code": "start-vo", "name": "Start VO", "amount_cents": 40_000, "min_age": 12, "max_age": 13,
             "period": "school_year", "once": True}
    child = _child("a", date(2014, 1, 1), valid_from=date(2026, 1, 1), valid_until=date(2028, 7, 31), number=1)
    _sync(db, vault, [child], _rules(start, expiry_grace_days=14), date(2026, 9, 1))
    raised = _rules({**start, "amount_cents": 50_000, "version": 2}, expiry_grace_days=14)
    assert _sync(db, vault, [child], raised, date(2027, 8, 5)).budgets_granted == 0
    assert _budgets(db) == [("start-vo", "once", 40_000, 40_000, BudgetStatus.OPEN)]
    # Raised in its own year, the once-budget is topped up as any other.
    other = _child("b", date(2015, 1, 1), valid_from=date(2026, 1, 1), valid_until=date(2028, 7, 31), number=2)
    _sync(db, vault, [child, other], _rules(start, expiry_grace_days=14), date(2027, 8, 6))
    assert _sync(db, vault, [child, other], raised, date(2027, 9, 1)).budgets_granted == 1
    with db.read() as session:
        assert session.execute(select(Budget.granted_cents).order_by(Budget.id)).scalars().all() == [40_000, 50_000]
        assert ledger.verify(session) == []


def test_a_date_that_does_not_exist_is_a_rules_error_naming_its_line(tmp_path):
    """`ends: 2027-02-29` (no leap year) made PyYAML raise a bare ValueError, "day is out of range for month":
    `config check` and every sync stopped with a traceback naming neither the rules file nor the line."""
    path = tmp_path / "budgets.yaml"
    path.write_text("rules:\n"
                    "  - code: winter\n"
                    "    name: Winterkleding\n"
                    "    amount_cents: 5000\n"
                    "    period: explicit\n"
                    "    starts: 2026-12-01\n"
                    "    ends: 2027-02-29\n", encoding="utf-8")
    with pytest.raises(RulesError) as caught:
        load_rules(path)
    message = str(caught.value)
    assert str(path) in message and "2027-02-29 is not a day of the calendar" in message
    assert "line 7" in message


def test_a_reference_day_outside_an_explicit_period_is_refused_not_moved_to_its_last_day():
    """A summer rule of 1 June - 31 August with `reference: "09-01"` judged every child's age and pass on 31
    August, a day the rules file never names; the officer is told instead."""
    summer = {"code": "summer", "name": "Zomer", "amount_cents": 5_000, "period": "explicit",
              "starts": "2026-06-01", "ends": "2026-08-31"}
    with pytest.raises(RulesError) as caught:
        _rules({**summer, "reference": "09-01"})
    [problem] = caught.value.problems
    assert problem.startswith("rules.0: ") and problem.endswith(
        "reference 09-01 does not fall between 'starts' 2026-06-01 and 'ends' 2026-08-31; "
        "choose a month and day inside the period, or leave 'reference' out to judge on its first day")
    for inside in ("06-01", "07-01", "08-31"):
        rule = _rules({**summer, "reference": inside}).rules[0]
        period = rule.period_on(date(2026, 7, 15), "08-01")
        assert rule.reference_date(period) == date(2026, int(inside[:2]), int(inside[3:]))
    # A period across New Year takes the day in whichever year it falls.
    winter = _rules({**summer, "starts": "2026-12-01", "ends": "2027-02-28", "reference": "01-15"}).rules[0]
    assert winter.reference_date(winter.period_on(date(2027, 1, 1), "08-01")) == date(2027, 1, 15)


def test_a_rules_error_says_what_to_write_not_which_pattern_or_type_failed():
    """A policy officer was told "String should match pattern '^(0[1-9]|1[0-2])-...$'" for `reference: 1-7`,
    and "Input should be a valid integer" for an amount written in euros."""
    with pytest.raises(RulesError) as caught:
        _rules({**PRIMARY, "code": "School", "amount_cents": "125,00", "reference": "1-7", "pass_statuses": "active"},
               {**SECONDARY, "min_age": 18, "max_age": 17}, pass_year_starts="8-1")
    assert sorted(caught.value.problems) == sorted([
        "pass_year_starts: write a month and day as \"MM-DD\" in quotes, e.g. \"08-01\" (found '8-1')",
        "rules.0.code: use lower-case letters, digits, '-' and '_' only, e.g. school-primary (found 'School')",
        "rules.0.amount_cents: write whole euro cents without a decimal point, e.g. 12500 for € 125,00 "
        "(found '125,00')",
        "rules.0.reference: write a month and day as \"MM-DD\" in quotes, e.g. \"07-01\" (found '1-7')",
        "rules.0.pass_statuses: give a list of statuses, e.g. [active] or [active, blocked] (found 'active')",
        "rules.1: min_age 18 is above max_age 17",
    ])


def test_children_judged_before_a_replaced_card_counted_are_judged_again_after_the_upgrade(db, vault, monkeypatch):
    """The version that counts a replaced card beside a qualifying one left the rules' fingerprint as it was: a
    child judged by the version before (a rule added mid-year gave it nothing) was not judged again, and kept
    nothing of the rule until the period ended, unless its record happened to change."""
    from adapter import rules as rules_module
    from adapter.records import PassStatus

    judged_now = rules_module.Rule.entitlement_cents

    def judged_before(rule, period, birth_date, is_child, passes):  # type: ignore[no-untyped-def]
        passes = [card for card in passes if card.status != PassStatus.REPLACED or card.status in rule.pass_statuses]
        return judged_now(rule, period, birth_date, is_child, passes)

    winter = {**PRIMARY, "code": "winter", "name": "Winterkleding", "amount_cents": 5_000}
    lost = _child("a", date(2018, 3, 3), valid_from=date(2026, 1, 1), valid_until=date(2028, 7, 31), number=1)
    new_card = dataclasses.replace(lost, pass_number="6400009999", replaces_pass_number=lost.pass_number,
                                   valid_from=date(2026, 10, 1))
    with monkeypatch.context() as before_the_upgrade:
        before_the_upgrade.setattr(rules_module.Rule, "entitlement_cents", judged_before)
        before_the_upgrade.setattr(rules_module, "JUDGED_BY", 1, raising=False)
        _sync(db, vault, [lost], _rules(PRIMARY), date(2026, 8, 1))
        _sync(db, vault, [new_card], _rules(PRIMARY), date(2026, 10, 1))
        _sync(db, vault, [new_card], _rules(PRIMARY, winter), date(2026, 11, 1))
        assert [row[0] for row in _budgets(db)] == ["primary"]

    _sync(db, vault, [new_card], _rules(PRIMARY, winter), date(2026, 11, 2))
    assert [(row[0], row[2]) for row in _budgets(db)] == [("primary", 10_000), ("winter", 5_000)]


CLOTHING = {"code": "clothing", "name": "Kleding", "amount_cents": 15_000, "category": "clothing",
            "min_age": 0, "max_age": 17, "period": "calendar_year", "pro_rata": True}


@pytest.mark.parametrize("pro_rata", [False, True])
def test_a_child_whose_card_was_renewed_under_a_new_number_gets_a_raise_of_the_calendar_year(db, vault, pro_rata):
    """A pass year ends on 31 July. A source that renews a pass under a new number lists last year's card as
    expired and the new one valid from 1 August. Both were the child's pass, each on its days: raised in
    September, the calendar year's rule (judged on 1 January, when last year's card was valid) tops up this child
    as it tops up a child whose card was extended in place, and a rule added then gives it the same."""
    clothing = {**CLOTHING, "pro_rata": pro_rata}
    winter = {**CLOTHING, "code": "winter", "name": "Winterkleding", "amount_cents": 5_000, "pro_rata": pro_rata}
    renewed = _child("a", date(2018, 3, 3), valid_from=date(2025, 8, 1), valid_until=date(2026, 7, 31), number=1)
    extended = _child("b", date(2018, 3, 3), valid_from=date(2025, 8, 1), valid_until=date(2026, 7, 31), number=2)
    _sync(db, vault, [renewed, extended], _rules(clothing), date(2026, 1, 5))
    last_years = dataclasses.replace(renewed, pass_status=PassStatus.EXPIRED)
    new_card = dataclasses.replace(renewed, source_key="line 9", pass_number="6400009999",
                                   valid_from=date(2026, 8, 1), valid_until=date(2027, 7, 31))
    extended = dataclasses.replace(extended, valid_until=date(2027, 7, 31))
    _sync(db, vault, [last_years, new_card, extended], _rules(clothing), date(2026, 8, 1))

    raised = {**clothing, "amount_cents": 17_500, "version": 2}
    _sync(db, vault, [last_years, new_card, extended], _rules(raised, winter), date(2026, 9, 1))
    with db.read() as session:
        granted = session.execute(select(Cardholder.source_key, Budget.rule_code, Budget.granted_cents)
                                  .join(Budget, Budget.cardholder_id == Cardholder.id)
                                  .order_by(Cardholder.source_key, Budget.rule_code)).all()
        assert ledger.verify(session) == []
    assert granted == [("a", "clothing", 17_500), ("a", "winter", 5_000),
                       ("b", "clothing", 17_500), ("b", "winter", 5_000)]


def test_a_rule_made_once_while_running_or_no_longer_once_grants_no_second_budget(db, vault):
    """The once flag is part of a budget's key ("once" for ever, else the period's): flipped on a running rule,
    every child got a second budget of the same rule over the same days, its money twice."""
    clothing = {"code": "clothing", "name": "Kleding", "amount_cents": 5_000, "min_age": 0, "max_age": 17,
                "period": "calendar_year"}
    child = _child("a", date(2016, 5, 5), number=1)
    _sync(db, vault, [child], _rules(clothing), date(2026, 3, 1))
    assert _sync(db, vault, [child], _rules({**clothing, "once": True, "version": 2}),
                 date(2026, 3, 2)).budgets_granted == 0
    # Once is once: the next year brings no budget either, whatever rule the child had it under.
    assert _sync(db, vault, [child], _rules({**clothing, "once": True, "version": 2}),
                 date(2027, 3, 1)).budgets_granted == 0
    assert _budgets(db) == [("clothing", "2026", 5_000, 5_000, BudgetStatus.OPEN)]

    other = _child("b", date(2017, 5, 5), number=2)
    _sync(db, vault, [child, other], _rules({**clothing, "once": True, "version": 3}), date(2027, 3, 2))
    # Made periodic again in the same year: the once-budget over this year's days is this year's budget.
    assert _sync(db, vault, [child, other], _rules({**clothing, "version": 4}),
                 date(2027, 3, 3)).budgets_granted == 1  # the first child's 2027, which it had not had
    with db.read() as session:
        assert session.execute(select(Budget.period_key).where(Budget.cardholder_id == select(Cardholder.id).where(
            Cardholder.source_key == "b").scalar_subquery())).scalars().all() == ["once"]
        assert ledger.verify(session) == []
