"""Engine and transactions, with the one difference between our databases that matters.

Money needs write transactions that serialise on the row being changed:
- PostgreSQL: ordinary transactions; the ledger takes row locks and uses
  conditional UPDATEs, so workers on many hosts can share one database.
- SQLite: pysqlite's own transaction handling is switched off and a write
  transaction starts with ``BEGIN IMMEDIATE`` (SQLAlchemy's documented sqlite
  recipe). A deferred transaction that reads and then writes fails with
  "database is locked" under load instead of waiting its turn.

A pooled PostgreSQL connection is pinged before use only when it sat idle for
more than ``PING_AFTER_IDLE_SECONDS`` (HikariCP's "alive bypass window"): a
connection a busy API worker handed back a moment ago is alive, and a ping per
request is a round trip per request. A single-statement read (a balance check)
runs without a transaction around it (``read_once``): one statement is
consistent on its own, and BEGIN and ROLLBACK would be two round trips more.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

# The execution option that makes a SQLite transaction begin with ``BEGIN IMMEDIATE`` (see ``Database.write``).
SQLITE_BEGIN_IMMEDIATE = "sqlite_begin_immediate"
# The page size of a SQLite database made from now on (one made before keeps its own: SQLite fixes it when it
# first writes to the file, which the journal mode below does). A first sync of 200,000 cardholders writes more
# than a million rows in one transaction; with 16 KiB pages instead of SQLite's 4 KiB its writing, granting and
# committing took 0.2-1.2 s less in eight alternating pairs (median 0.8 s), the commit 0.47-0.55 s against
# 0.69-0.77 s.
SQLITE_PAGE_SIZE = 16384
# SQLite copies its write-ahead log into the database after this many pages, whatever their size. For pages
# larger than 4 KiB the threshold is kept at the bytes of as many pages of 4 KiB: at 1000 pages of 16 KiB a
# counter's redemption paid for copying four times as much every so often (one worker, one client: p99 above 8 ms
# in 6 of 8 rounds, 3.5-13.7 ms, against 4.3-6.4 ms). A database with smaller pages keeps SQLite's own threshold.
SQLITE_DEFAULT_CHECKPOINT_PAGES = 1000
SQLITE_CHECKPOINT_BYTES = SQLITE_DEFAULT_CHECKPOINT_PAGES * 4096
# A connection back in the pool for longer than this is pinged before it is handed out again.
PING_AFTER_IDLE_SECONDS = 1.0
_IDLE_SINCE = "adapter_idle_since"


class Database:
    """An engine plus session factories for reading and for writing."""

    def __init__(self, url: str, *, pool_size: int = 5, echo: bool = False):
        self.url = url
        self.engine = _create_engine(url, pool_size=pool_size, echo=echo)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self.is_postgres = self.engine.dialect.name == "postgresql"
        self._read_sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite: its BEGIN is ours to emit (see _on_begin), and a read there costs no round trip anyway.
        once_engine = self.engine.execution_options(isolation_level="AUTOCOMMIT") if self.is_postgres else self.engine
        self._once_sessions = sessionmaker(once_engine, expire_on_commit=False)
        write_engine = self.engine.execution_options(**{SQLITE_BEGIN_IMMEDIATE: True})
        self._write_sessions = sessionmaker(write_engine, expire_on_commit=False)

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reads; never commits. Closing it ends the transaction and
        detaches loaded objects without expiring them, so callers can keep using them."""
        with self._read_sessions() as session:
            yield session

    @contextlib.contextmanager
    def read_once(self) -> Iterator[Session]:
        """A session for a read that is one statement, or read-only statements that need not see the same
        moment. On PostgreSQL it runs outside a transaction: a single statement sees one consistent
        snapshot by itself, and BEGIN and ROLLBACK would cost two round trips. Each statement in it may
        see a different moment: use ``read`` where they must agree."""
        with self._once_sessions() as session:
            yield session

    @contextlib.contextmanager
    def write(self) -> Iterator[Session]:
        """One write transaction: commits when the block ends, rolls back on error."""
        with self._write_sessions() as session, session.begin():
            yield session

    def scrub_removed(self, tables: Sequence[str]) -> bool:
        """Make the old versions of rows just changed or deleted in ``tables`` unreadable on disk, after
        retention or key rotation removed personal data or tokens under a retired key. True when done.

        SQLite zeroes what it frees as it writes (``secure_delete``, set on every connection), but the write-ahead
        log keeps each changed page's earlier image until a check-point resets it: a truncating check-point
        copies the log into the database and empties it. It waits for readers (a counter's request, briefly),
        and reports False when one kept it from finishing; the next check-point then does it.
        PostgreSQL keeps a changed row's old version in its table and indexes until a VACUUM, which this runs;
        False when an open snapshot kept some (the next VACUUM removes them). No query returns them after it,
        but a plain VACUUM leaves their bytes in the free space of the table's files until new rows reuse it;
        only a rewrite (VACUUM FULL, which locks the table) removes them from the files (README, privacy). Its
        write-ahead log and backups keep them for as long as the server keeps those.
        """
        if self.is_sqlite:
            with self.engine.connect() as connection:
                busy, _log_pages, _copied = connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
            return not busy
        if self.is_postgres:
            quoted = ", ".join(self.engine.dialect.identifier_preparer.quote(name) for name in tables)
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.exec_driver_sql(f"VACUUM {quoted}")
                # A VACUUM leaves what an open snapshot may still see (a long report, a standby's query): it
                # counts those as dead rows left, and the next VACUUM (autovacuum's, or this again) removes them.
                left = connection.execute(text(
                    "SELECT coalesce(sum(n_dead_tup), 0) FROM pg_stat_user_tables WHERE relname = ANY(:names)"),
                    {"names": list(tables)}).scalar_one()
            return left == 0
        return False

    def dispose(self) -> None:
        self.engine.dispose()


def _create_engine(url: str, *, pool_size: int, echo: bool) -> Engine:
    # hide_parameters: SQLAlchemy's errors otherwise end in "[parameters: ...]", the bound values of the
    # failing statement (pass numbers, blind indexes), and such errors reach logs and terminals.
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size, echo=echo, hide_parameters=True)
        ping_when_idle(engine)
        return engine

    if parsed.database and parsed.database != ":memory:" and not parsed.database.startswith("file:"):
        _create_owner_only(Path(parsed.database))
    engine = create_engine(url, echo=echo, hide_parameters=True,
                           connect_args={"timeout": 60, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        # Let SQLAlchemy emit BEGIN itself (see the module docstring).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # Before anything else: on a new database, the first write below fixes its page size.
        cursor.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")
        cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
        page_size = cursor.execute("PRAGMA page_size").fetchone()[0]
        if page_size * SQLITE_DEFAULT_CHECKPOINT_PAGES > SQLITE_CHECKPOINT_BYTES:
            cursor.execute(f"PRAGMA wal_autocheckpoint={SQLITE_CHECKPOINT_BYTES // page_size}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # Freed space is zeroed, not left holding a deleted or overwritten value (a pseudonymised cardholder's
        # token, one under a retired key). Debian's SQLite has it on by default, upstream's not.
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:  # type: ignore[no-untyped-def]
        if connection.get_execution_options().get(SQLITE_BEGIN_IMMEDIATE):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.exec_driver_sql("BEGIN")

    return engine


def _create_owner_only(database_file: Path) -> None:
    """Create a new SQLite database file readable and writable by its owner alone (an existing one is left as
    it is). It holds full pass numbers, blind indexes and the sealed personal data, and SQLite would otherwise
    create it by the umask, commonly readable by every account on the machine; its write-ahead log and
    shared-memory files take the database file's mode. As ``dev-keys.json`` beside it.

    A file that cannot be made here (a folder this account may not write to, a path through a file) is left to
    SQLite, whose own open then fails as "unable to open database file", which the CLI and the readiness check
    word for the operator; raised here, it was a traceback at the start of every command."""
    try:
        database_file.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(database_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError:  # FileExistsError too: an existing database keeps its mode
        pass


def ping_when_idle(engine: Engine) -> None:
    """Ping a pooled connection before it is handed out if it sat idle for more than ``PING_AFTER_IDLE_SECONDS``;
    a dead one is replaced before anyone uses it (SQLAlchemy's pessimistic disconnect handling, with
    ``pool_pre_ping``'s ping, minus the round trip for a connection in steady use)."""

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get(_IDLE_SINCE)  # none yet: a connection just made
        if idle_since is None or time.monotonic() - idle_since <= PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as error:  # noqa: BLE001 - any failure to answer means: not usable
            # The pool invalidates this connection and checks out another (up to three times).
            raise exc.DisconnectionError("a pooled connection did not answer its ping") from error
