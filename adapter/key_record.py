"""An idempotency key's record, inserted before any money moves: by itself, or beside the caller's first read.

The record is inserted first in the write transaction, so a concurrent request with
the same key (a twin) blocks on the unique index and, once the first commits,
finds its stored outcome. On PostgreSQL a twin waits only briefly (``lock_timeout``)
and then answers "in progress"; the timeout is set back inside the same statement,
so a budget's row lock later in the transaction waits as long as it takes.

On PostgreSQL the insert can ride along in the statement of the caller's first read
(the counter's pass look-up): one round trip fewer for every redemption. A READ
COMMITTED statement reads from the snapshot at its start, so the look-up's rows may
predate a twin the insert waited for; they are used only when the insert went in,
that is when no twin committed, and the debit after it re-checks the balance anyway.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Connection, Select, String, bindparam, func, literal, select, text, true
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.sql.selectable import CTE

from adapter.db import Database
from adapter.models import IdempotencyRecord, utcnow


class IdempotencyInProgress(Exception):
    """Another request with the same idempotency key is still running; the client retries later.

    PostgreSQL only: the twin waits ``in_progress_wait_ms`` on the key's unique index and then
    gives up. SQLite serialises every write transaction (BEGIN IMMEDIATE), so there a twin
    simply waits its turn and then replays the stored outcome.
    """


class KeyRecord:
    """One request's record for (merchant, key); ``insert`` says whether it went in."""

    def __init__(self, db: Database, merchant_id: int, key: str, fingerprint: str, wait_ms: int):
        self._db = db
        self._params = {"record_wait_ms": str(int(wait_ms)), "record_merchant_id": merchant_id, "record_key": key,
                        "record_request_hash": fingerprint}
        self._done = False
        self._id: int | None = None

    def read_beside(self, session: Session, statement: Select[Any], params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """The rows of ``statement``; on PostgreSQL the record's insert runs in the same statement.

        Only the first read carries the insert. ``statement``'s parameters must not start with ``record_``.
        """
        if self._done or not self._db.is_postgres:
            return [tuple(row) for row in session.connection().execute(statement, params)]
        rows = self._run(session, _beside(statement), params)
        # Always one row at least (the read is outer-joined to one): its first column is the record's id,
        # its second whether the read found this row.
        self._settle(session, rows[0][0])
        return [tuple(row)[2:] for row in rows if row[1] is not None]

    def insert(self, session: Session) -> int | None:
        """The new record's id, or None when the key already has a committed record."""
        if self._done:
            return self._id
        if not self._db.is_postgres:  # BEGIN IMMEDIATE: no twin can be running
            self._done = True
            self._id = session.connection().execute(_SQLITE_INSERT, {**self._params, "record_created_at": utcnow()})\
                .scalar_one_or_none()
            return self._id
        self._settle(session, self._run(session, _ALONE, {})[0][0])
        return self._id

    def _run(self, session: Session, statement: Select[Any], params: dict[str, Any]) -> list[Any]:
        connection = session.connection()
        try:
            return list(connection.execute(statement, {
                **params, **self._params, "record_created_at": utcnow(),
                "record_default_wait": _default_lock_timeout(connection)}))
        except OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) == "55P03":  # lock_not_available
                raise IdempotencyInProgress("a request with this idempotency key is still running") from None
            raise

    def _settle(self, session: Session, record_id: int | None) -> None:
        self._done, self._id = True, record_id
        if record_id is None:  # RETURNING did not run: set the timeout back ourselves (rare: replays only)
            session.connection().execute(text("SET LOCAL lock_timeout = DEFAULT"))


def _default_lock_timeout(connection: Connection) -> str:
    """What ``SET lock_timeout = DEFAULT`` means on this connection: the server's, database's or role's
    setting as the session started with it.

    Read once per connection and kept with it: pg_settings builds every setting of the server to
    answer, about 0.8 ms of database CPU, which per redemption was a fifth of its whole cost. (After a
    change to postgresql.conf and a reload, a pooled connection keeps the value it read.)
    """
    default = connection.info.get(_DEFAULT_LOCK_TIMEOUT)
    if default is None:
        default = connection.info[_DEFAULT_LOCK_TIMEOUT] = connection.execute(
            text("SELECT reset_val FROM pg_settings WHERE name = 'lock_timeout'")).scalar_one()
    return default


_DEFAULT_LOCK_TIMEOUT = "adapter_default_lock_timeout"


def _postgres_record_insert() -> CTE:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING id, as a CTE, with the short lock wait around it.

    The timeout is set (set_config(..., true) is SET LOCAL) while the insert's one source row is produced,
    so before it can wait on a twin's key; RETURNING sets it back to what DEFAULT means after the row
    went in.
    """
    records = IdempotencyRecord.__table__
    short_wait = select(func.set_config("lock_timeout", bindparam("record_wait_ms", type_=String), True)
                        .label("lock_timeout")).cte("short_lock_wait")
    row = select(bindparam("record_merchant_id", type_=BigInteger), bindparam("record_key", type_=String),
                 bindparam("record_request_hash", type_=String), literal("{}", String),
                 bindparam("record_created_at", type_=records.c.created_at.type))\
        .select_from(short_wait).where(short_wait.c.lock_timeout.is_not(None))
    reset = bindparam("record_default_wait", type_=String)
    return (postgres_insert(records)
            .from_select(["merchant_id", "key", "request_hash", "outcome_json", "created_at"], row)
            .on_conflict_do_nothing(index_elements=["merchant_id", "key"])
            .returning(records.c.id, func.set_config("lock_timeout", reset, True))
            .cte("new_record"))


_RECORD = _postgres_record_insert()
# The record's id (NULL when the key was known), alone.
_ALONE: Select[Any] = select(select(_RECORD.c.id).scalar_subquery())

_SQLITE_INSERT = (sqlite_insert(IdempotencyRecord)
                  .values(merchant_id=bindparam("record_merchant_id"), key=bindparam("record_key"),
                          request_hash=bindparam("record_request_hash"), outcome_json="{}",
                          created_at=bindparam("record_created_at"))
                  .on_conflict_do_nothing(index_elements=["merchant_id", "key"])
                  .returning(IdempotencyRecord.id))

# Statement id -> (the statement, kept alive; the statement with the record's insert beside it).
_BESIDE: dict[int, tuple[Select[Any], Select[Any]]] = {}


def _beside(statement: Select[Any]) -> Select[Any]:
    """The record's id, a found-marker, then ``statement``'s columns: its rows outer-joined to one row, so
    the id comes back even when the read finds nothing. Built once per statement: building costs more
    CPU than running. The caller's ORDER BY stays inside the subquery, which does not promise the order
    outside it: callers that care sort themselves."""
    if id(statement) not in _BESIDE:
        found = statement.with_only_columns(literal(1).label("record_found"), *statement.selected_columns)\
            .subquery("found")
        one = select(literal(1).label("one")).subquery("one")
        _BESIDE[id(statement)] = (statement, select(select(_RECORD.c.id).scalar_subquery(), *found.c)
                                  .select_from(one.outerjoin(found, true())))
    return _BESIDE[id(statement)][1]
