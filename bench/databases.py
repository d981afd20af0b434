"""Throw-away databases for one bench run: a SQLite file, or a PostgreSQL database dropped after."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from adapter import migrate
from adapter.db import Database

DEFAULT_POSTGRES_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def postgres_reachable(server_url: str) -> str | None:
    """None when the server answers, else why not."""
    try:
        engine = create_engine(server_url)
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not available here"
        return f"PostgreSQL at {make_url(server_url).render_as_string(hide_password=True)} "\
               f"is not reachable ({exc.__class__.__name__})"


def _admin(server_url: str):  # type: ignore[no-untyped-def]
    return create_engine(server_url, isolation_level="AUTOCOMMIT")


@contextlib.contextmanager
def postgres_database(server_url: str, *, migrated: bool = True) -> Iterator[str]:
    """A fresh database on the server (migrated to head), dropped afterwards whatever happens."""
    name = f"spa_bench_{uuid.uuid4().hex[:10]}"
    admin = _admin(server_url)
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    try:
        if migrated:
            database = Database(url)
            migrate.upgrade(database)
            database.dispose()
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextlib.contextmanager
def sqlite_database(folder: Path, *, migrated: bool = True) -> Iterator[str]:
    path = folder / f"bench-{uuid.uuid4().hex[:8]}.db"
    url = f"sqlite:///{path}"
    if migrated:
        database = Database(url)
        migrate.upgrade(database)
        database.dispose()
    try:
        yield url
    finally:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


@contextlib.contextmanager
def database(kind: str, folder: Path, server_url: str, *, migrated: bool = True) -> Iterator[str]:
    if kind == "postgres":
        with postgres_database(server_url, migrated=migrated) as url:
            yield url
    else:
        with sqlite_database(folder, migrated=migrated) as url:
            yield url
