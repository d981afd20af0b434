"""Statements sent ahead (adapter.sent_ahead): out on PostgreSQL until the connection is used again, then waited
for; their errors raised as SQLAlchemy's, without values; at once anywhere else."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

import psycopg
import pytest
from sqlalchemy import func, insert, literal, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from adapter.bulk import insert_tuples
from adapter.bulk_read import driver_rows
from adapter.db import Database
from adapter.models import Household
from adapter.sent_ahead import sending_ahead

STAMP = datetime(2026, 9, 1, 4, 30, tzinfo=timezone.utc)


def _household(source_key: str, household_id: int | None = None):  # type: ignore[no-untyped-def]
    """One household as an INSERT ... SELECT: a statement that returns nothing, as what is sent ahead must."""
    values = {"source": "ahead", "source_key": source_key, "created_at": STAMP, "updated_at": STAMP}
    if household_id is not None:
        values["id"] = household_id
    return insert(Household.__table__).from_select(
        list(values), select(*[literal(value, Household.__table__.c[name].type) for name, value in values.items()]))


def _count(session: Session) -> int:
    return session.execute(select(func.count()).select_from(Household)).scalar_one()


def _pipeline_on(session: Session) -> bool:
    driver = session.connection().connection.driver_connection
    return driver.pgconn.pipeline_status != psycopg.pq.PipelineStatus.OFF  # type: ignore[union-attr]


@pytest.fixture
def postgres_db(postgres_url: str) -> Iterator[Database]:
    database = Database(postgres_url)
    yield database
    database.dispose()


def test_on_postgresql_a_statement_sent_ahead_is_out_until_the_next_statement_which_waits_and_sees_it(postgres_db):
    with postgres_db.write() as session, sending_ahead(session) as ahead:
        assert not _pipeline_on(session)
        ahead.send(_household("H1"))
        assert _pipeline_on(session), "the answer was waited for: nothing was sent ahead"
        assert _count(session) == 1  # through SQLAlchemy: waits for the answer first
        assert not _pipeline_on(session)
        ahead.send(_household("H2"))
    with postgres_db.read() as session:
        assert _count(session) == 2


def test_the_bulk_modules_driver_cursors_wait_for_the_statement_sent_ahead(postgres_db):
    """They bypass SQLAlchemy's events; a COPY inside the pipeline would be refused by the driver."""
    with postgres_db.write() as session, sending_ahead(session) as ahead:
        ahead.send(_household("H1"))
        insert_tuples(session, Household.__table__, ("source_key",), [("H2",), ("H3",)],
                      {"source": "ahead", "created_at": STAMP, "updated_at": STAMP})
        ahead.send(_household("H4"))
        keys = [key for (key,) in driver_rows(session.connection(), select(Household.source_key)
                                              .order_by(Household.source_key))]
        assert keys == ["H1", "H2", "H3", "H4"]


def test_an_error_of_a_statement_sent_ahead_is_raised_at_the_next_statement_as_sqlalchemys_without_values(
        postgres_db):
    with pytest.raises(IntegrityError) as raised, postgres_db.write() as session, sending_ahead(session) as ahead:
        session.execute(_household("H1", household_id=1))
        ahead.send(_household("H2", household_id=1))  # the same id: refused by the server
        _count(session)
        pytest.fail("the statement after the failed one ran")
    assert isinstance(raised.value.orig, psycopg.errors.UniqueViolation)
    assert "INSERT INTO households" in str(raised.value)
    assert raised.value.params is None and raised.value.hide_parameters  # as the rest of the service raises them
    with postgres_db.read() as session:
        assert _count(session) == 0, "the transaction did not roll back"


def test_an_error_of_a_statement_sent_ahead_is_raised_at_the_next_bulk_insert(postgres_db):
    """What a first load's grants do next after sending a slice's first grants: insert the next slice's rows."""
    with pytest.raises(IntegrityError) as raised, postgres_db.write() as session, sending_ahead(session) as ahead:
        session.execute(_household("H1", household_id=1))
        ahead.send(_household("H2", household_id=1))
        insert_tuples(session, Household.__table__, ("source_key",), [("H3",)],
                      {"source": "ahead", "created_at": STAMP, "updated_at": STAMP})
        pytest.fail("the insert after the failed statement ran")
    assert isinstance(raised.value.orig, psycopg.errors.UniqueViolation)
    with postgres_db.read() as session:
        assert _count(session) == 0


def test_an_error_of_the_block_while_a_failing_statement_is_out_is_the_one_raised(postgres_db):
    with pytest.raises(ZeroDivisionError), postgres_db.write() as session, sending_ahead(session) as ahead:
        session.execute(_household("H1", household_id=1))
        ahead.send(_household("H2", household_id=1))
        1 / 0  # noqa: B018
    with postgres_db.read() as session:
        assert _count(session) == 0


def test_inside_a_savepoint_as_a_first_load_runs_what_was_sent_is_kept_or_its_error_undoes_the_savepoint(
        postgres_db):
    with postgres_db.write() as session:
        with session.begin_nested(), sending_ahead(session) as ahead:
            ahead.send(_household("H1"))
        with pytest.raises(IntegrityError), session.begin_nested(), sending_ahead(session) as ahead:
            ahead.send(_household("H2"))
            ahead.send(_household("H3", household_id=1))  # clashes with H1's id, which the sequence gave it
        session.execute(_household("H4"))
    with postgres_db.read() as session:
        assert sorted(session.execute(select(Household.source_key)).scalars()) == ["H1", "H4"]


@pytest.mark.parametrize("statement_out", [False, True])
def test_a_connection_lost_inside_the_block_is_reported_as_lost(postgres_db, postgres_url, statement_out):
    """Not as another error raised by the clean-up: the sync records the error's text as the run's reason."""
    other = Database(postgres_url)
    try:
        with pytest.raises(Exception) as raised, postgres_db.write() as session, \
                sending_ahead(session) as ahead:
            backend = session.execute(select(func.pg_backend_pid())).scalar_one()
            if statement_out:
                ahead.send(_household("H1"))
            with other.write() as killing:
                killing.execute(select(func.pg_terminate_backend(backend)))
            _count(session)
            pytest.fail("the statement ran on a connection that was gone")
    finally:
        other.dispose()
    assert isinstance(raised.value, OperationalError), repr(raised.value)
    assert isinstance(raised.value.orig, psycopg.OperationalError)


def test_nothing_can_be_sent_ahead_after_the_block(postgres_db):
    with postgres_db.write() as session:
        with sending_ahead(session) as ahead:
            pass
        with pytest.raises(RuntimeError, match="only inside"):
            ahead.send(_household("H1"))
        assert _count(session) == 0 and not _pipeline_on(session)


def test_an_error_of_a_statement_sent_ahead_last_is_raised_when_the_block_ends(postgres_db):
    with pytest.raises(IntegrityError), postgres_db.write() as session:
        with sending_ahead(session) as ahead:
            session.execute(_household("H1", household_id=1))
            ahead.send(_household("H2", household_id=1))
        pytest.fail("the block ended without the statement's error")


def test_an_error_inside_the_block_is_the_one_raised_and_the_connection_is_fine_after_the_rollback(postgres_db):
    with pytest.raises(ZeroDivisionError), postgres_db.write() as session, sending_ahead(session) as ahead:
        ahead.send(_household("H1"))
        1 / 0  # noqa: B018 - an error of the block's own while the statement is out
    for written in range(3):  # whichever pooled connection it gets
        with postgres_db.write() as session:
            assert not _pipeline_on(session)
            assert _count(session) == written, "the statement sent ahead was committed"
            session.execute(_household(f"H{written + 2}"))
    with postgres_db.read() as session:
        assert _count(session) == 3


def test_after_the_block_statements_go_as_usual(postgres_db):
    with postgres_db.write() as session:
        connection = session.connection()
        listeners = len(connection.dispatch.before_cursor_execute)
        with sending_ahead(session) as ahead:
            ahead.send(_household("H1"))
        assert len(connection.dispatch.before_cursor_execute) == listeners
        assert not _pipeline_on(session)


@pytest.mark.parametrize(("engine", "enabled"), [
    ("sqlite", True), ("sqlite", False), pytest.param("postgres", False, marks=pytest.mark.postgres)])
def test_on_sqlite_or_when_not_enabled_the_statement_runs_at_once(engine, enabled, request):
    db = Database(request.getfixturevalue("sqlite_url" if engine == "sqlite" else "postgres_url"))
    try:
        with db.write() as session, sending_ahead(session, enabled=enabled) as ahead:
            # Nothing can be out, so nothing waits for it: no listener on the connection's statements.
            assert not session.connection().dispatch.before_cursor_execute
            ahead.send(_household("H1"))
            if engine == "postgres":
                assert not _pipeline_on(session)
            assert _count(session) == 1
    finally:
        db.dispose()


@pytest.mark.parametrize("engine", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_statement_that_returns_rows_is_refused_before_anything_is_sent(engine, request):
    """SQLAlchemy would read its rows at once and find none in the pipeline (an INSERT of one row given its
    values returns its new id)."""
    db = Database(request.getfixturevalue("sqlite_url" if engine == "sqlite" else "postgres_url"))
    try:
        with db.write() as session, sending_ahead(session) as ahead:
            table = Household.__table__
            for returning in (insert(table).values(source="ahead", source_key="H1", created_at=STAMP,
                                                   updated_at=STAMP),
                              _household("H2").returning(table.c.id), select(table.c.id)):
                with pytest.raises(ValueError, match="returns no rows"):
                    ahead.send(returning)
            assert _count(session) == 0
    finally:
        db.dispose()
