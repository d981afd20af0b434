"""SQLite databases: made with large pages, and checkpointed by the bytes in their log, not by its pages."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import text

from adapter import migrate
from adapter.db import SQLITE_CHECKPOINT_BYTES, SQLITE_DEFAULT_CHECKPOINT_PAGES, SQLITE_PAGE_SIZE, Database


def _pragmas(database: Database) -> tuple[int, int, str]:
    with database.engine.connect() as connection:
        return (connection.exec_driver_sql("PRAGMA page_size").scalar_one(),
                connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one(),
                connection.exec_driver_sql("PRAGMA journal_mode").scalar_one())


def test_a_database_made_now_has_large_pages_and_copies_its_log_after_as_many_bytes_as_sqlite_would(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'new.db'}")
    try:
        migrate.upgrade(database)
        assert _pragmas(database) == (SQLITE_PAGE_SIZE, SQLITE_CHECKPOINT_BYTES // SQLITE_PAGE_SIZE, "wal")
    finally:
        database.dispose()
    # What the file itself says, read without our connection's settings.
    with sqlite3.connect(tmp_path / "new.db") as raw:
        assert raw.execute("PRAGMA page_size").fetchone()[0] == SQLITE_PAGE_SIZE == 16384
    assert SQLITE_CHECKPOINT_BYTES // SQLITE_PAGE_SIZE == 250  # SQLite's own 1000 pages of 4 KiB


@pytest.mark.parametrize("page_size", [1024, 4096])
def test_a_database_made_before_keeps_its_pages_its_checkpoint_and_its_rows(tmp_path, page_size):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as raw:
        raw.execute(f"PRAGMA page_size={page_size}")
        raw.execute("CREATE TABLE kept (id INTEGER PRIMARY KEY, note TEXT)")
        raw.execute("INSERT INTO kept (note) VALUES ('before')")
    raw.close()
    with sqlite3.connect(tmp_path / "plain.db") as plain:  # what SQLite sets when nobody asks
        assert plain.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == SQLITE_DEFAULT_CHECKPOINT_PAGES
    plain.close()
    database = Database(f"sqlite:///{path}")
    try:
        assert _pragmas(database) == (page_size, SQLITE_DEFAULT_CHECKPOINT_PAGES, "wal")  # SQLite's own threshold
        with database.write() as session:
            session.execute(text("INSERT INTO kept (note) VALUES ('after')"))
        with database.read() as session:
            assert session.execute(text("SELECT note FROM kept ORDER BY id")).scalars().all() == ["before", "after"]
    finally:
        database.dispose()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA page_size").fetchone()[0] == page_size
