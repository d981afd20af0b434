"""One sync per source at a time, across processes and hosts.

Two guards:
- A lock the operating system or the server frees the moment its process dies, held
  for the whole run (``process_lock``): on PostgreSQL a session-level advisory lock
  on a connection of its own; on a SQLite file an exclusive ``flock`` on a file
  beside the database, which holds across containers that share its volume.
  While a run holds it, a lock row left by a killed process is known to be stale.
- Every database: a ``SyncLock`` row per source (primary key = source) naming the
  holder ("host:pid") and when it took the lock, which says who holds it. Without a
  process lock (an in-memory SQLite database) a row is stale when its process no
  longer exists on this host, or when it is older than ``STALE_AFTER`` (a sync takes
  seconds to minutes, never hours).

A second sync is told who holds the lock and since when, and exits non-zero.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import socket
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Connection, delete, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from adapter.db import Database
from adapter.models import SyncLock, utcnow

STALE_AFTER = timedelta(hours=6)

log = logging.getLogger(__name__)


class SyncBusy(Exception):
    """Another process holds the sync lock of this source."""

    def __init__(self, source: str, holder: str, since: datetime | None, run_id: int | None):
        self.source, self.holder, self.since, self.run_id = source, holder, since, run_id
        since_text = f" since {since:%Y-%m-%d %H:%M:%S} UTC" if since else ""
        run_text = f" (run {run_id})" if run_id else ""
        super().__init__(
            f"source '{source}' is already being synced by {holder}{since_text}{run_text}; nothing was done. "
            f"Wait for that run to finish (`stadspas-adapter sync history --source {source}`). If that process "
            f"is gone, the next run takes the lock over by itself.")


def this_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class AdvisoryLock:
    """A PostgreSQL session-level advisory lock on its own connection (freed if the process dies)."""

    def __init__(self, db: Database, source: str):
        self._db = db
        digest = hashlib.sha256(f"stadspas-adapter sync {source}".encode()).digest()
        self.key = int.from_bytes(digest[:8], "big", signed=True)
        self._connection: Connection | None = None

    def try_acquire(self) -> bool:
        connection = self._db.engine.connect()
        # The connection idles for the whole run while others write. A server that ends idle sessions
        # (idle_session_timeout, PostgreSQL 14 and later) would end this one, and the lock with it, in the middle
        # of a long sync: a second run could then take the source. Off for this session alone.
        if connection.dialect.server_version_info >= (14,):
            connection.execute(text("SET idle_session_timeout = 0"))
        acquired = connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": self.key}).scalar_one()
        connection.commit()
        if acquired:
            self._connection = connection
        else:
            connection.close()
        return bool(acquired)

    def release(self) -> None:
        """Unlock. A connection that fails to (the server restarted, the network dropped it) is discarded, never
        returned to the pool still holding the lock; its session's end frees the lock. Nothing is raised: the run
        is over, and its outcome is already stored and must not be reported as a failure."""
        if self._connection is None:
            return
        connection, self._connection = self._connection, None
        try:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self.key})
            if connection.dialect.server_version_info >= (14,):
                # Back in the pool it serves others: the server's idle timeout applies to it again.
                connection.execute(text("RESET idle_session_timeout"))
            connection.commit()
        except DBAPIError as exc:
            connection.invalidate()
            log.warning("the sync's lock could not be released on its connection (%s); the connection was dropped, "
                        "which frees the lock on the server", type(exc).__name__)
        finally:
            connection.close()


class FileLock:
    """An exclusive ``flock`` on a file beside a SQLite database, one per source, held until ``release`` or the
    process's end: the kernel frees it when the process dies, also one killed in another container sharing the
    database's volume (whose host name and process id mean nothing here)."""

    def __init__(self, database_path: Path, source: str):
        digest = hashlib.sha256(source.encode()).hexdigest()[:16]
        self.path = database_path.with_name(f"{database_path.name}.sync-{digest}.lock")
        self._descriptor: int | None = None

    def try_acquire(self) -> bool:
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            return False
        self._descriptor = descriptor
        return True

    def release(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)  # closing the only descriptor releases the flock
            self._descriptor = None


def process_lock(db: Database, source: str) -> AdvisoryLock | FileLock | None:
    """The lock that dies with its process, for ``source`` on ``db``; None where there is none to be had (an
    in-memory SQLite database: one process by nature)."""
    if db.is_postgres:
        return AdvisoryLock(db, source)
    database = db.engine.url.database if db.is_sqlite else None
    if database and database != ":memory:" and not database.startswith("file:"):
        return FileLock(Path(database).resolve(), source)
    return None


def current_lock(session: Session, source: str) -> SyncLock | None:
    return session.execute(select(SyncLock).where(SyncLock.source == source)).scalar_one_or_none()


def take(session: Session, source: str, holder: str, *, exclusive_proven: bool, now: datetime | None = None
         ) -> SyncLock | None:
    """Write our lock row in the caller's write transaction; return the stale row it replaced, if any.

    ``exclusive_proven``: the caller holds the source's ``process_lock``, so any row
    left behind belongs to a process that died. Raises SyncBusy when the row is live.
    """
    now = now or utcnow()
    existing = current_lock(session, source)
    stale = None
    if existing is not None:
        if not (exclusive_proven or _is_stale(existing, now)):
            raise SyncBusy(source, existing.holder, existing.acquired_at, existing.run_id)
        stale = SyncLock(source=existing.source, run_id=existing.run_id, holder=existing.holder,
                         acquired_at=existing.acquired_at)
        session.delete(existing)
        session.flush()
    session.add(SyncLock(source=source, holder=holder, acquired_at=now))
    session.flush()
    return stale


def release(session: Session, source: str, holder: str) -> None:
    session.execute(delete(SyncLock).where(SyncLock.source == source, SyncLock.holder == holder))


def _is_stale(lock: SyncLock, now: datetime) -> bool:
    if now - lock.acquired_at > STALE_AFTER:
        return True
    host, _, pid_text = lock.holder.rpartition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False  # another host: only age tells
    return not _process_exists(int(pid_text))


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True
