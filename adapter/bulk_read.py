"""Bulk reads for the nightly sync: the driver's own rows, a chunk at a time.

A sync reads every cardholder and pass of a source before it compares. Through
SQLAlchemy each row becomes a ``Row`` and each value goes through the column
type's result processing; for a few hundred thousand rows that costs more than
the database's own work. Here the statement is compiled by SQLAlchemy (so it
stays one dialect-neutral query) and run on the driver's cursor inside the
caller's transaction; the rows come back as the driver makes them: plain
tuples, dates as ISO text on SQLite and as ``date`` on PostgreSQL, statuses as
their stored text.

PostgreSQL rows come from a server-side cursor, so a million rows never sit in
memory twice (once in libpq, once in Python); SQLite's cursor steps through
them by itself.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection, Select
from sqlalchemy.exc import DBAPIError

from adapter.sent_ahead import settled

_cursor_names = itertools.count(1)


def driver_rows(connection: Connection, statement: Select[Any], chunk_rows: int = 10_000) -> Iterator[tuple]:
    """The rows of ``statement``, unconverted; from PostgreSQL ``chunk_rows`` at a time. Its bound values
    are handed to the driver as they are: use it for statements that bind text and numbers only (no
    dates, no enums)."""
    dialect = connection.dialect
    compiled = statement.compile(dialect=dialect)
    parameters: Any = compiled.construct_params()
    if dialect.positional:
        parameters = tuple(parameters[name] for name in compiled.positiontup or ())
    settled(connection)  # the driver's cursor bypasses SQLAlchemy's events (see adapter.sent_ahead)
    driver_connection = connection.connection.driver_connection
    server_side = dialect.name == "postgresql"
    if server_side:
        cursor = driver_connection.cursor(name=f"adapter_bulk_read_{next(_cursor_names)}")
    else:
        cursor = driver_connection.cursor()
    try:
        cursor.execute(compiled.string, parameters)
        if server_side:
            while rows := cursor.fetchmany(chunk_rows):  # one round trip per chunk
                yield from rows
        else:
            # SQLite's cursor steps through the rows itself; lists of them in between cost 0.08 s per 400k.
            yield from cursor
    except dialect.loaded_dbapi.Error as exc:
        # As SQLAlchemy would raise it, without the bound values (a source name is harmless, but the rule is one).
        raise DBAPIError.instance(compiled.string, None, exc, dialect.loaded_dbapi.Error, hide_parameters=True,
                                  dialect=dialect) from exc
    finally:
        cursor.close()
