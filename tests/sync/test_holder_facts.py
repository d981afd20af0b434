"""What a sync hands to the grants of the cardholders it wrote (birth date, child flag, and on a first load
their passes): by row id, for new cardholders (a run of ids) and changed ones."""

from __future__ import annotations

from datetime import date

import pytest

from adapter import holder_facts
from adapter.holder_facts import HolderFactsById


def test_new_cardholders_dates_are_found_by_their_reserved_ids():
    dates = HolderFactsById(range(101, 105))
    for birth in (date(2012, 5, 1), None, date(2019, 12, 31)):
        dates.add_new(birth, True)
    assert dates[101] == date(2012, 5, 1) and dates[102] is None and dates[103] == date(2019, 12, 31)
    assert 103 in dates and 104 not in dates and 100 not in dates  # 104 is reserved, its date not added yet
    assert dates.get("101") is None and dates.get(104) is None
    assert len(dates) == 3 and list(dates) == [101, 102, 103]


def test_ids_that_are_not_one_run_are_found_too():
    dates = HolderFactsById([7, 9, 40])  # a shared sequence: other writers took the numbers between
    for birth in (date(2010, 1, 2), date(2011, 3, 4), date(2012, 5, 6)):
        dates.add_new(birth, True)
    assert [dates[holder_id] for holder_id in (7, 9, 40)] == [date(2010, 1, 2), date(2011, 3, 4), date(2012, 5, 6)]
    assert 8 not in dates and 6 not in dates and 41 not in dates
    with pytest.raises(KeyError):
        dates[8]
    assert dates.get("9") is None and dates.get(9) == date(2011, 3, 4)


def test_changed_cardholders_keep_their_own_ids_beside_the_new_ones():
    dates = HolderFactsById(range(1000, 1002))
    dates.add_new(date(2015, 6, 7), True)
    dates.add_changed(12, date(2008, 8, 8), False)
    dates.add_changed(13, None, False)
    assert dates[12] == date(2008, 8, 8) and dates[13] is None and dates[1000] == date(2015, 6, 7)
    assert {12, 13, 1000} == set(dates) and 14 not in dates and "12" not in dates
    assert dict(dates) == {1000: date(2015, 6, 7), 12: date(2008, 8, 8), 13: None}


def test_one_date_object_per_day():
    dates = HolderFactsById(range(1, 4))
    for _ in range(3):
        dates.add_new(date(2014, 2, 3), True)
    assert dates[1] is dates[2] is dates[3]


def test_more_dates_than_ids_is_refused():
    dates = HolderFactsById(range(1, 2))
    dates.add_new(date(2014, 2, 3), True)
    with pytest.raises(IndexError, match="more new cardholders"):
        dates.add_new(date(2014, 2, 4), True)


def test_two_bytes_a_new_cardholder_and_dates_outside_their_span_kept_exactly():
    dates = HolderFactsById(range(1, 7))
    births = [date(1900, 1, 1), date(2079, 6, 4), date(1899, 12, 31), date(2079, 6, 5), date(1, 1, 1), None]
    for birth in births:
        dates.add_new(birth, True)
    assert [dates[holder_id] for holder_id in range(1, 7)] == births
    assert dates._new.itemsize == 2
    assert dates._outside == {3: date(1899, 12, 31), 4: date(2079, 6, 5), 5: date(1, 1, 1)}  # the span's edges
    assert len(dates) == 6 and list(dates) == list(range(1, 7))  # an outside date is no extra entry


def test_child_flags_of_the_cardholders_written_none_true_and_false_kept_apart():
    facts = HolderFactsById(range(1, 5))
    for birth, is_child in ((date(2014, 2, 3), True), (None, None), (date(1980, 1, 1), False)):
        facts.add_new(birth, is_child)  # 4 is reserved, not written yet
    facts.add_changed(77, date(2012, 1, 1), None)
    facts.add_changed(78, None, True)
    assert facts._new_flags.itemsize == 1
    assert facts.child_flags_of([1, 2, 3]) == [True, None, False]  # a run of new ids: a slice of the array
    assert facts.child_flags_of([2, 3, 77, 78]) == [None, False, None, True]
    assert facts.child_flags_of([]) == []
    # One not written here, and the caller must read every flag from the database.
    for asked in ([1, 2, 3, 4], [0, 1], [3, 76, 77], [2, 79]):
        assert facts.child_flags_of(asked) is None
    assert facts.child_flags_of([1, 3]) == [True, False]  # not a run: looked up one by one


def test_child_flags_of_ids_that_are_not_one_run_and_of_changed_cardholders_alone():
    facts = HolderFactsById([7, 9, 40])
    for is_child in (True, False, None):
        facts.add_new(date(2015, 1, 1), is_child)
    assert facts.child_flags_of([7, 9, 40]) == [True, False, None] and facts.child_flags_of([7, 8, 9]) is None
    changed_only = HolderFactsById(range(0))
    changed_only.add_changed(5, None, False)
    assert changed_only.child_flags_of([5]) == [False] and changed_only.child_flags_of([5, 6]) is None


ACTIVE = ("active", date(2026, 1, 1), date(2026, 12, 31))
BLOCKED = ("blocked", date(2026, 1, 1), None)
REPLACED = ("replaced", None, date(2026, 6, 30))


@pytest.mark.parametrize("new_ids", [range(50, 54), [7, 9, 40, 41]], ids=["one run", "not one run"])
def test_the_passes_noted_of_each_new_cardholder_come_back_by_its_id_once_all_are_noted(new_ids):
    facts = HolderFactsById(new_ids)
    # Noted in the order the sync writes passes (not by cardholder), before the cardholders themselves.
    facts.note_new_pass(2, ACTIVE)
    facts.note_new_pass(0, REPLACED)
    facts.note_new_pass(2, BLOCKED)
    facts.note_new_pass(0, ACTIVE)
    assert facts.pass_facts_of(list(new_ids)) is None  # not known to be all of them yet
    facts.all_passes_noted()
    assert facts.pass_facts_of(list(new_ids)) == [(REPLACED, ACTIVE), (), (ACTIVE, BLOCKED), ()]
    assert facts.pass_facts_of([new_ids[1], new_ids[2]]) == [(), (ACTIVE, BLOCKED)]
    assert facts.pass_facts_of([]) == []
    # An id that is no new cardholder's (a stored one, with passes written elsewhere): not answered.
    assert facts.pass_facts_of([new_ids[0], new_ids[-1] + 1]) is None
    assert facts.pass_facts_of([new_ids[0] - 1]) is None


def test_two_cardholders_with_the_same_passes_share_one_set_of_them():
    facts = HolderFactsById(range(1, 4))
    for holder_new in (0, 1, 2):
        facts.note_new_pass(holder_new, ACTIVE)
    facts.all_passes_noted()
    first, second, third = facts.pass_facts_of([1, 2, 3])
    assert first is second is third and first == (ACTIVE,)


def test_passes_too_varied_to_number_in_two_bytes_are_not_kept_and_the_grants_read_them(monkeypatch):
    monkeypatch.setattr(holder_facts, "_MOST_PASS_SETS", 3)  # (), and two more sets
    within = HolderFactsById(range(1, 5))
    for holder_new, facts in enumerate((ACTIVE, BLOCKED, ACTIVE)):
        within.note_new_pass(holder_new, facts)
    within.all_passes_noted()
    assert within.pass_facts_of([1, 2, 3, 4]) == [(ACTIVE,), (BLOCKED,), (ACTIVE,), ()]
    beyond = HolderFactsById(range(1, 5))
    for holder_new, facts in enumerate((ACTIVE, BLOCKED, REPLACED, ACTIVE)):  # REPLACED makes a fourth set
        beyond.note_new_pass(holder_new, facts)
    beyond.all_passes_noted()
    assert beyond.pass_facts_of([1, 2, 3, 4]) is None and beyond.pass_facts_of([1]) is None


def test_a_first_load_whose_new_cardholders_have_no_pass_knows_they_have_none():
    facts = HolderFactsById(range(10, 12))
    facts.all_passes_noted()
    assert facts.pass_facts_of([10, 11]) == [(), ()]
