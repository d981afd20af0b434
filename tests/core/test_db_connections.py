"""Pooled PostgreSQL connections: pinged only after sitting idle, and single-statement reads without a
transaction around them."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import create_engine, text

from adapter import db as db_module
from adapter.db import Database

pytestmark = pytest.mark.postgres


@pytest.fixture
def one_connection(postgres_url):
    database = Database(postgres_url, pool_size=1)
    yield database
    database.dispose()


@pytest.fixture
def pings(one_connection, monkeypatch):
    """Every ping the pool makes, counted (and still made)."""
    made: list[int] = []
    dialect = one_connection.engine.dialect
    real_ping = dialect.do_ping

    def counted(dbapi_connection):
        made.append(1)
        return real_ping(dbapi_connection)

    monkeypatch.setattr(dialect, "do_ping", counted)
    return made


def _backend_pid(database: Database) -> int:
    with database.read() as session:
        return session.execute(text("SELECT pg_backend_pid()")).scalar_one()


def _terminate(postgres_url: str, pid: int) -> None:
    admin = create_engine(postgres_url)
    try:
        with admin.connect() as connection:
            connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        admin.dispose()
    time.sleep(0.1)  # the server closes the socket asynchronously


def test_a_connection_back_a_moment_ago_is_handed_out_without_a_ping(one_connection, pings):
    first = _backend_pid(one_connection)
    for _ in range(5):
        assert _backend_pid(one_connection) == first
    assert pings == []


def test_a_connection_idle_for_longer_is_pinged_first(one_connection, pings, monkeypatch):
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE_SECONDS", 0.05)
    first = _backend_pid(one_connection)
    time.sleep(0.1)
    assert _backend_pid(one_connection) == first
    assert pings == [1]


def test_a_connection_that_died_while_idle_is_replaced_before_anyone_uses_it(one_connection, postgres_url,
                                                                            monkeypatch):
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE_SECONDS", 0.05)
    first = _backend_pid(one_connection)
    _terminate(postgres_url, first)
    time.sleep(0.1)
    assert _backend_pid(one_connection) != first  # no error: the ping found it dead, a new one answered


def test_within_the_window_a_dead_connection_is_not_pinged_and_surfaces_as_an_error(one_connection, postgres_url,
                                                                                   monkeypatch):
    """The price of skipping the ping (what the window trades): the caller sees the error once; the
    pool drops that connection, and the next use gets a live one."""
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE_SECONDS", 60)
    first = _backend_pid(one_connection)
    _terminate(postgres_url, first)
    with pytest.raises(Exception, match="(?i)terminat|closed|connection"):
        _backend_pid(one_connection)
    assert _backend_pid(one_connection) != first


def test_a_single_statement_read_runs_outside_a_transaction_and_leaves_the_connection_as_it_was(one_connection):
    with one_connection.read_once() as session:
        driver = session.connection().connection.driver_connection
        assert driver.autocommit is True
        pid = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
        time.sleep(0.01)
        # Outside a transaction each statement starts its own: now() is this statement's start.
        assert session.execute(text("SELECT now() = statement_timestamp()")).scalar_one() is True
    with one_connection.read() as session:
        # The same pooled connection (the pool holds one), back in transactions.
        assert session.execute(text("SELECT pg_backend_pid()")).scalar_one() == pid
        assert session.connection().connection.driver_connection.autocommit is False
        time.sleep(0.01)
        # Inside a transaction now() is the transaction's start, earlier than this statement.
        assert session.execute(text("SELECT now() < statement_timestamp()")).scalar_one() is True
