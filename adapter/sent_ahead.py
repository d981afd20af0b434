"""PostgreSQL: a statement whose answer nobody reads, sent without waiting for it while this process goes on.

A first load's grants (``adapter.grants``) take turns with the server slice by slice: this process judges a
slice of children (Python alone, the server idle), then the server copies the slice's first grants into the
ledger (one ``INSERT ... SELECT``, this process idle), and the answer it waits for says only "done". Sent in
psycopg's pipeline mode, that statement runs on the server while this process judges the next slice.

Nothing else can run on the connection while the statement is out, so whatever comes next waits for its
answer first: a statement through SQLAlchemy (an event on the connection while ``sending_ahead`` is open), and
the driver's own cursors of ``adapter.bulk`` and ``adapter.bulk_read`` (``settled``). An error of the statement
sent ahead is raised there, or when the block ends, as the exception SQLAlchemy would have raised for it
(without its parameters), and fails the transaction as it would have then. A block that ends in an error of
its own ends the pipeline and raises that error.

Anywhere else (SQLite, or ``enabled=False``) ``send`` runs the statement at once, as ``Connection.execute``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection, event
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.sql import Executable

# The open pipeline and the text of the statement in it, kept in the driver connection's info: both the
# event below and the bulk modules' driver cursors find it there.
_OUT = "adapter.sent_ahead"
_POSTGRESQL = postgresql.dialect()


class SentAhead:
    """Sends one statement at a time ahead (see the module docstring); made by ``sending_ahead``, and usable only
    inside its block: outside it nothing would wait for the answer."""

    def __init__(self, session: Session, enabled: bool):
        self._connection = session.connection()
        # The pooled connection's info, taken once: a Connection that lost its database refuses to give it,
        # and the clean-up after such an error must not raise another in its place.
        self._info = self._connection.info
        self._enabled = enabled and self._connection.dialect.name == "postgresql"
        self._open = True

    def send(self, statement: Executable) -> None:
        """Run ``statement`` on the session's connection, as a Core statement (no ORM flush or bookkeeping); on
        PostgreSQL without waiting for its answer.

        Only a statement that returns nothing (an INSERT ... SELECT; an UPDATE or a DELETE without RETURNING):
        SQLAlchemy reads the rows of one that does (an INSERT of one row given its values returns its new id) as
        soon as it is executed, and would find none. Looked at as PostgreSQL would run it whatever the
        database, so that what works on SQLite works there too."""
        if not self._open:
            raise RuntimeError("a statement can be sent ahead only inside its sending_ahead block")
        compiled = statement.compile(dialect=_POSTGRESQL)
        if getattr(statement, "is_select", False) or getattr(compiled, "effective_returning", None):
            raise ValueError("only a statement that returns no rows can be sent ahead (an INSERT ... SELECT, "
                             "an UPDATE or a DELETE without RETURNING)")
        settled(self._connection)
        if not self._enabled:
            self._connection.execute(statement)
            return
        pipeline = self._connection.connection.driver_connection.pipeline()  # type: ignore[union-attr]
        pipeline.__enter__()
        try:
            self._connection.execute(statement)
        except BaseException as exc:
            pipeline.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self._info[_OUT] = (pipeline, str(statement))

    def _abandon(self, error: BaseException) -> None:
        """End the pipeline of a statement still out when the block failed with ``error``, which is the one
        raised: the transaction is lost either way, and psycopg only logs the statement's own error then."""
        out = self._info.pop(_OUT, None)
        if out is not None:
            with contextlib.suppress(Exception):
                out[0].__exit__(type(error), error, error.__traceback__)


def settled(connection: Connection) -> None:
    """Wait for the answer to a statement sent ahead on ``connection``, if one is out; raise its error."""
    out = connection.info.pop(_OUT, None)
    if out is None:
        return
    pipeline, statement = out
    dbapi_error = connection.dialect.loaded_dbapi.Error
    try:
        pipeline.__exit__(None, None, None)
    except dbapi_error as exc:
        raise DBAPIError.instance(statement, None, exc, dbapi_error, hide_parameters=True,
                                  dialect=connection.dialect) from exc


@contextlib.contextmanager
def sending_ahead(session: Session, *, enabled: bool = True) -> Iterator[SentAhead]:
    """A block in which statements may be sent ahead; every answer is in when it ends."""
    ahead = SentAhead(session, enabled)
    connection = ahead._connection
    if not ahead._enabled:
        # Nothing is ever out: no listener on the connection, whose every statement would call it (a nightly
        # sync's grants, and SQLite's), and which SQLAlchemy would go on dispatching to after its removal.
        try:
            yield ahead
        finally:
            ahead._open = False
        return

    def settle_first(conn: Connection, *_args: Any) -> None:
        settled(conn)

    event.listen(connection, "before_cursor_execute", settle_first)
    try:
        yield ahead
        settled(connection)
    except BaseException as exc:
        ahead._abandon(exc)
        raise
    finally:
        ahead._open = False
        event.remove(connection, "before_cursor_execute", settle_first)
