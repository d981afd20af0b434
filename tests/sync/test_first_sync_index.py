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


def test_while_the_index_is_rebuilt_a_counter_on_another_connection_still_finds_a_stored_child(db, vault,
                                                                                            monkeypatch):
    """The rebuild happens inside the sync's one write transaction. A reader on its own connection (an API
    worker at the counter) goes on seeing the cardholders and the index as they were, without waiting for the
    sync: on SQLite through the write-ahead log, on PostgreSQL because the index is never dropped there."""
    import adapter.sync as sync
    from adapter.db import Database
    from adapter.models import Cardholder

    monkeypatch.setattr(bulk, "_REBUILD_FROM", 1)
    stored = household_records(2)  # the first cardholders carry test BSNs
    run_sync(db, vault, "gemeente", stored, settings=SyncSettings(), rules=SIMPLE_RULES, today=TODAY)
    arriving = stored + household_records(30, start=100)  # many more new cardholders than stored ones
    seen_meanwhile: list[tuple[str | None, bool, bool]] = []
    insert = sync.insert_tuples

    def looking_from_the_counter(session, table, *args, **kwargs):  # type: ignore[no-untyped-def]
        if table is Cardholder.__table__ and not seen_meanwhile:
            writer_sees_index = "ix_cardholders_bsn_index" in {
                index["name"] for index in inspect(session.connection()).get_indexes("cardholders")}
            counter = Database(db.url)
            try:
                with counter.read() as reading:
                    found = find_cardholder_by_bsn(reading, vault, stored[0].bsn)
                    counter_sees_index = "ix_cardholders_bsn_index" in {
                        index["name"] for index in inspect(reading.connection()).get_indexes("cardholders")}
                    seen_meanwhile.append((found.source_key if found else None, counter_sees_index,
                                           writer_sees_index))
            finally:
                counter.dispose()
        return insert(session, table, *args, **kwargs)

    monkeypatch.setattr(sync, "insert_tuples", looking_from_the_counter)
    result = run_sync(db, vault, "gemeente", arriving, settings=SyncSettings(max_change_share=1.0),
                      rules=SIMPLE_RULES, today=TODAY)
    assert result.ok, result.reason
    # The writer works without the index on SQLite (that is the rebuild), never on PostgreSQL; the counter
    # finds the child and sees the index either way.
    assert seen_meanwhile == [(stored[0].cardholder_id, True, db.is_postgres)]
