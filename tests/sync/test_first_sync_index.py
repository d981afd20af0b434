"""A first sync builds the cardholders' BSN index after its rows (SQLite): afterwards a BSN is found through it."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect

from adapter import bulk
from adapter.lookup import find_cardholder_by_bsn
from adapter.settings import SyncSettings
from adapter.sync import run_sync
from tests.sync.records import SIMPLE_RULES, TODAY, household_records


@pytest.mark.parametrize("rebuild_from", [1, 10_000])  # built after the rows; kept in place (too few rows)
def test_after_a_first_sync_each_child_is_found_by_bsn_through_the_index(db, vault, monkeypatch, rebuild_from):
    monkeypatch.setattr(bulk, "_REBUILD_FROM", rebuild_from)
    records = household_records(6)
    result = run_sync(db, vault, "gemeente", records, settings=SyncSettings(), rules=SIMPLE_RULES, today=TODAY)
    assert result.ok and result.created == len(records)
    with db.read() as session:
        assert "ix_cardholders_bsn_index" in {index["name"] for index in inspect(session.connection())
                                              .get_indexes("cardholders")}
        for record in records:
            if record.bsn:
                found = find_cardholder_by_bsn(session, vault, record.bsn)
                assert found is not None and found.source_key == record.cardholder_id
