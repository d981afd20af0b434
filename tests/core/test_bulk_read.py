"""Bulk reads: every row, as the driver returns it, in chunks; errors without the bound values."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import literal_column, select
from sqlalchemy.exc import DBAPIError

from adapter.bulk import insert_rows, insert_tuples
from adapter.bulk_read import driver_rows
from adapter.models import Cardholder, HolderStatus, Household, utcnow


def _holders(db, count: int) -> None:  # type: ignore[no-untyped-def]
    now = utcnow()
    with db.write() as session:
        insert_rows(session, Household.__table__, [{"source_key": "H1"}],
                    {"source": "read", "created_at": now, "updated_at": now})
        household_id = session.execute(select(Household.id)).scalar_one()
        insert_tuples(session, Cardholder.__table__, ("source_key", "missing_since"),
                      [(f"C{number:02d}", date(2026, 8, number + 1) if number % 2 else None)
                       for number in range(count)],
                      {"household_id": household_id, "source": "read", "status": HolderStatus.MISSING,
                       "created_at": now, "updated_at": now})


def test_every_row_comes_back_over_many_chunks_with_the_drivers_own_values(db):
    _holders(db, 7)
    with db.read() as session:
        rows = list(driver_rows(session.connection(),
                                select(Cardholder.source_key, Cardholder.status, Cardholder.missing_since)
                                .where(Cardholder.source == "read"), chunk_rows=2))
        # Still usable after the read: the cursor is closed, the transaction is not.
        assert session.execute(select(Cardholder.id).limit(1)).scalar_one() is not None
    assert sorted(key for key, _, _ in rows) == [f"C{number:02d}" for number in range(7)]
    assert all(type(row) is tuple for row in rows)
    # The stored text, no enum: the caller converts what it needs, once per distinct value.
    assert {status for _, status, _ in rows} == {"missing"}
    days = {key: day for key, _, day in rows}
    assert days["C00"] is None
    raw_day = days["C01"]
    assert raw_day == (date(2026, 8, 2) if db.is_postgres else "2026-08-02")


def test_a_statement_the_database_refuses_is_raised_as_sqlalchemy_would(db):
    # A DBAPIError with the driver's error as .orig: what failure_reason() words without quoting values.
    with db.read() as session, pytest.raises(DBAPIError) as raised:
        list(driver_rows(session.connection(), select(literal_column("no_such_column"))
                         .where(Cardholder.source == "read")))
    assert isinstance(raised.value.orig, db.engine.dialect.loaded_dbapi.Error)
