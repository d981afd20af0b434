"""Reporting periods as people type them on the dashboard and the command line."""

from __future__ import annotations

from datetime import date

import pytest

from adapter.periods import PeriodError, parse_period


@pytest.mark.parametrize("text", ["9999", "0001", "0001..2026", "2026..9999-12-31", "1899-12"])
def test_a_period_outside_the_years_it_can_hold_is_refused_saying_which_years(text):  # type: ignore[no-untyped-def]
    with pytest.raises(PeriodError, match="outside the years 1900 to 2999"):
        parse_period(text)


def test_the_first_and_last_years_hold_with_their_instants():  # type: ignore[no-untyped-def]
    period = parse_period("1900..2999")
    assert (period.first_day, period.last_day) == (date(1900, 1, 1), date(2999, 12, 31))
    assert period.start_utc < period.end_utc
    assert parse_period("2026-03").months() == ["2026-03"]


@pytest.mark.parametrize("grace_days", [0, 1, 14])
def test_a_budget_is_spendable_up_to_its_last_day_and_not_after(grace_days):
    from datetime import timedelta

    from adapter.periods import earliest_spendable_end, last_spendable_day

    period_end = date(2026, 7, 31)
    last_day = last_spendable_day(period_end, grace_days)
    assert last_day == period_end + timedelta(days=grace_days)
    # The counter's look-up (period_end >= earliest end) and the roll-over's (period_end < earliest end) agree.
    assert period_end >= earliest_spendable_end(last_day, grace_days)
    assert period_end < earliest_spendable_end(last_day + timedelta(days=1), grace_days)
