"""Every budget keeps its child's age band on its first day, for the reports: set when the grants open it, and
moved when a birth date is corrected (migration 0011 works out those of budgets opened before)."""

from __future__ import annotations

import dataclasses
from datetime import date

import pytest
from sqlalchemy import select

from adapter import age_bands, first_load
from adapter.models import Budget, Cardholder
from adapter.settings import SyncSettings
from adapter.sync import run_sync
from tests.sync.records import SIMPLE_RULES, TODAY, household_records

LENIENT = SyncSettings(max_change_share=1.0)


def _sync(db, vault, source, records):  # type: ignore[no-untyped-def]
    result = run_sync(db, vault, source, records, settings=LENIENT, rules=SIMPLE_RULES, today=TODAY)
    assert result.ok, result.reason
    return result


def _bands(db, source):  # type: ignore[no-untyped-def]
    """(cardholder key, rule) -> (the budget's first day, its band), of every budget of ``source``."""
    with db.read() as session:
        return {(key, rule): (first_day, band) for key, rule, first_day, band in session.execute(
            select(Cardholder.source_key, Budget.rule_code, Budget.period_start, Budget.age_band)
            .join(Cardholder, Cardholder.id == Budget.cardholder_id).where(Cardholder.source == source))}


def _expected(records, bands):  # type: ignore[no-untyped-def]
    born = {record.cardholder_id: record.birth_date for record in records}
    return {slot: (first_day, age_bands.band_of(born[slot[0]], first_day)) for slot, (first_day, _) in bands.items()}


@pytest.mark.parametrize("checked_at_end", [False, True], ids=["row_by_row", "first_load_checked_at_end"])
def test_every_budget_a_sync_opens_keeps_its_childs_age_band_on_its_first_day(db, vault, monkeypatch, checked_at_end):
    if checked_at_end:
        monkeypatch.setattr(first_load, "CHECK_AT_END_FROM", 1)
    records = household_records(40)
    _sync(db, vault, "gemeente", records)
    bands = _bands(db, "gemeente")
    assert len(bands) > 40
    assert bands == _expected(records, bands)
    # Children of more than one band, so that a band taken from the wrong child or rule would show.
    assert {band for _, band in bands.values()} >= {"4-11", "12-17"}


@pytest.mark.parametrize("born, band", [(date(2012, 6, 1), "12-17"), (date(2007, 6, 1), "18+")],
                         ids=["still_in_the_rule", "out_of_the_rule"])
def test_a_corrected_birth_date_moves_a_running_budget_to_its_new_band(db, vault, born, band):
    """Also when the correction takes the child out of the rule: the budget it keeps is counted in its new band."""
    records = household_records(4)
    _sync(db, vault, "gemeente", records)
    child = next(record for record in records
                 if record.is_child and age_bands.band_of(record.birth_date, date(2026, 1, 1)) == "4-11")
    clothing = (child.cardholder_id, "clothing")  # a rule for 0 to 17 year olds
    assert _bands(db, "gemeente")[clothing] == (date(2026, 1, 1), "4-11")
    corrected = dataclasses.replace(child, birth_date=born)
    _sync(db, vault, "gemeente", [corrected if record is child else record for record in records])
    assert _bands(db, "gemeente")[clothing] == (date(2026, 1, 1), band)
