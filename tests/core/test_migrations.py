"""Migrations run forwards and backwards on both databases, and match the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from adapter import migrate
from adapter.db import Database
from adapter.schema import metadata


def test_schema_matches_models_and_round_trips(database_url):
    database = Database(database_url)
    try:
        assert migrate.is_current(database)
        with database.engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), metadata)
        assert differences == []
        migrate.downgrade(database, "base")
        assert "ledger_entries" not in inspect(database.engine).get_table_names()
        assert migrate.current_revision(database) is None
        migrate.upgrade(database)
        assert set(metadata.tables) <= set(inspect(database.engine).get_table_names())
        assert migrate.is_current(database)
    finally:
        database.dispose()
