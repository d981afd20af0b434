"""Database-level guards used by migrations: append-only tables.

The ledger and the audit trail must never be edited in place. The application
never does, and these triggers make the database refuse it too, on both
PostgreSQL and SQLite, for anyone with ordinary table access.
"""

from __future__ import annotations

from typing import Any


def create_append_only_triggers(op: Any, table: str) -> None:
    message = f"{table} is append-only: write a correcting entry instead"
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"""
            CREATE OR REPLACE FUNCTION refuse_change_{table}() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION '{message}';
            END;
            $$ LANGUAGE plpgsql""")
        op.execute(f"""
            CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
            FOR EACH ROW EXECUTE FUNCTION refuse_change_{table}()""")
        return
    for action in ("UPDATE", "DELETE"):
        op.execute(f"""
            CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table}
            BEGIN
                SELECT RAISE(ABORT, '{message}');
            END""")


def drop_append_only_triggers(op: Any, table: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute(f"DROP FUNCTION IF EXISTS refuse_change_{table}()")
        return
    for action in ("update", "delete"):
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{action}")
