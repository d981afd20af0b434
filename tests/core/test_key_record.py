"""The idempotency key's record, inserted by itself or (PostgreSQL) in the statement of the counter's first read."""

from __future__ import annotations

import pytest
from sqlalchemy import func, literal, select, text

from adapter.db import Database
from adapter.key_record import IdempotencyInProgress, KeyRecord
from adapter.models import IdempotencyRecord, Pass
from tests import factories

_LOCK_TIMEOUT = text("SELECT setting FROM pg_settings WHERE name = 'lock_timeout'")
_DEFAULT_LOCK_TIMEOUT = text("SELECT reset_val FROM pg_settings WHERE name = 'lock_timeout'")


def _pass_numbers(number: str):  # type: ignore[no-untyped-def]
    """A read shaped like the counter's: a parameter, an ORDER BY, and a last column after the row's own."""
    return (select(Pass.__table__.c.id, Pass.__table__.c.pass_number, literal(7).label("guard"))
            .where(Pass.__table__.c.pass_number == number).order_by(Pass.__table__.c.id))


def _records(db: Database, merchant_id: int) -> list[tuple[str, str]]:
    with db.read() as session:
        return [tuple(row) for row in session.execute(  # type: ignore[misc]
            select(IdempotencyRecord.key, IdempotencyRecord.request_hash)
            .where(IdempotencyRecord.merchant_id == merchant_id).order_by(IdempotencyRecord.key))]


def test_a_read_beside_answers_as_the_read_alone_and_the_record_goes_in_once(db, vault):
    child = factories.child_with_budget(db, vault, amount_cents=1_000)
    shop = factories.merchant(db)
    with db.read() as session:
        number = session.execute(select(Pass.pass_number).where(Pass.id == child.pass_id)).scalar_one()
    for read_number in (number, "0000000000"):  # a pass that exists, and one that does not
        key = f"key-{read_number}"
        with db.write() as session:
            alone = [tuple(row) for row in session.connection().execute(_pass_numbers(read_number))]
            record = KeyRecord(db, shop.merchant_id, key, "fp", 1_500)
            beside = record.read_beside(session, _pass_numbers(read_number), {})
            again = record.read_beside(session, _pass_numbers(read_number), {})  # no second insert
            record_id = record.insert(session)
        assert beside == alone == again
        assert len(alone) == (1 if read_number == number else 0)
        assert record_id is not None
    assert _records(db, shop.merchant_id) == [("key-0000000000", "fp"), (f"key-{number}", "fp")]


def test_a_known_key_inserts_nothing_beside_the_read(db, vault):
    shop = factories.merchant(db)
    with db.write() as session:
        assert KeyRecord(db, shop.merchant_id, "seen", "first", 1_500).insert(session) is not None
    with db.write() as session:
        record = KeyRecord(db, shop.merchant_id, "seen", "second", 1_500)
        record.read_beside(session, _pass_numbers("1"), {})
        assert record.insert(session) is None
    assert _records(db, shop.merchant_id) == [("seen", "first")]


def _insert_alone(record: KeyRecord, session) -> None:  # type: ignore[no-untyped-def]
    record.insert(session)


def _insert_beside_a_read(record: KeyRecord, session) -> None:  # type: ignore[no-untyped-def]
    record.read_beside(session, _pass_numbers("1"), {})


BOTH_WAYS = pytest.mark.parametrize("insert", [_insert_alone, _insert_beside_a_read], ids=["alone", "beside"])


@pytest.mark.postgres
@BOTH_WAYS
def test_the_short_wait_ends_with_the_insert(postgres_url, insert):
    """The budget's row lock later in the transaction must wait as long as it takes: the short timeout
    is set back inside the statement, for a new key and for a key seen before."""
    db = Database(postgres_url)
    shop = factories.merchant(db)
    try:
        for _attempt in range(2):
            with db.write() as session:
                default = session.execute(_DEFAULT_LOCK_TIMEOUT).scalar_one()
                insert(KeyRecord(db, shop.merchant_id, "k", "fp", 1_500), session)
                assert session.execute(_LOCK_TIMEOUT).scalar_one() == default
    finally:
        db.dispose()


@pytest.mark.postgres
def test_the_timeout_goes_back_to_the_databases_own_default(postgres_url):
    """Set back to what DEFAULT means for this database (read once per connection), not to a fixed value."""
    setup = Database(postgres_url)
    with setup.write() as session:
        database = session.execute(text("SELECT current_database()")).scalar_one()
        session.execute(text(f'ALTER DATABASE "{database}" SET lock_timeout = 7000'))
    setup.dispose()
    db = Database(postgres_url)  # new connections start with the database's setting
    shop = factories.merchant(db)
    try:
        for key in ("new", "new"):
            with db.write() as session:
                _insert_beside_a_read(KeyRecord(db, shop.merchant_id, key, "fp", 50), session)
                assert session.execute(_LOCK_TIMEOUT).scalar_one() == "7000"
    finally:
        db.dispose()


@pytest.mark.postgres
@BOTH_WAYS
def test_a_twin_holding_the_key_is_in_progress_after_the_short_wait(postgres_url, insert):
    db = Database(postgres_url)
    shop = factories.merchant(db)
    try:
        with db.write() as twin:
            KeyRecord(db, shop.merchant_id, "busy", "fp", 1_500).insert(twin)
            with db.write() as session, pytest.raises(IdempotencyInProgress):
                insert(KeyRecord(db, shop.merchant_id, "busy", "fp", 50), session)
        with db.read() as session:
            assert session.execute(select(func.count()).select_from(IdempotencyRecord)).scalar_one() == 1
    finally:
        db.dispose()


def test_on_sqlite_the_read_carries_no_insert(sqlite_url):
    """SQLite serialises write transactions; its record goes in by itself, after the read."""
    db = Database(sqlite_url)
    shop = factories.merchant(db)
    try:
        with db.write() as session:
            record = KeyRecord(db, shop.merchant_id, "k", "fp", 1_500)
            record.read_beside(session, _pass_numbers("1"), {})
            assert session.execute(select(func.count()).select_from(IdempotencyRecord)).scalar_one() == 0
            assert record.insert(session) is not None
        assert _records(db, shop.merchant_id) == [("k", "fp")]
    finally:
        db.dispose()
