"""A municipality's first load on PostgreSQL: its foreign keys checked once, at the end, not row by row.

PostgreSQL checks a foreign key on every inserted row with a trigger that looks up and locks the row it
names. A first sync of 200,000 cardholders inserts over a million rows that name another (passes and
budgets name their cardholder, ledger entries their budget). Measured on the rows of such a sync, copied
into tables of the same shape: 7.3 s with the keys in place, 3.6 s without them, and adding the keys
afterwards, which checks every row in one join per key, took 0.35 s.

So, around a large insert into tables that are all empty, the foreign keys among them are dropped and
added again before the commit, in the same transaction. Every row is still checked before anyone can see
it: a row that names nothing makes the re-adding fail, and the whole run rolls back with the keys as they
were. Dropping a key locks both its tables against readers until the commit; that is why this is done
only while the tables are empty, when a reader (the counter, the dashboard, a scheduled job) has nothing
to find yet. It then waits for the commit instead of being told "unknown pass".

The same holds for an index the load never reads (the cardholders' BSN index, the ledger's by budget and
by time): inside that lock it is dropped with the keys and built again from its stored definition at the
end, one sort instead of an insert per row. On a first sync of 200,000 rows the cardholders' COPY went
from 2.1 s to 1.0 s of the server's time and the ledger entries' from 1.8 s to 1.2 s, the four builds
taking about 0.5 s. And for a unique key the load never looks anything up by (the budgets' one budget per
child, rule and period): added again at the end, it checks every row at once, and the budgets' COPY went
from 1.15 s to 0.7 s, adding the key taking 0.2 s.

On SQLite a row-by-row check costs next to nothing (a primary key look-up in the same file), but it
forbids a row naming one not written yet. A first load there defers its keys instead
(``PRAGMA defer_foreign_keys``), which lets the sync write the cardholders after their passes, once their
personal columns are sealed (``adapter.sync``). SQLite counts the rows that name nothing meanwhile and
refuses to commit while any is left, so a row that names nothing fails the run. A dry run, which rolls back
instead, has its keys checked when the load ends (``PRAGMA foreign_key_check``), and fails the same way.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Iterator, Sequence

from sqlalchemy import Index, Table, UniqueConstraint, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, TEXT
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

log = logging.getLogger("adapter.first_load")

# Loads of fewer rows than this go in with their keys checked row by row: dropping and adding keys would not
# pay. The sync counts its cardholders, each of which brings a pass and some budgets and ledger entries.
CHECK_AT_END_FROM = 50_000
_LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE for a NOWAIT lock held by another transaction

_TABLES = bindparam("tables", type_=ARRAY(TEXT))
# Only keys that were checked when they were made: a NOT VALID key added again as it was would check nothing.
_KEYS_AMONG = text(
    "SELECT conrelid::regclass::text, quote_ident(conname), pg_get_constraintdef(oid) FROM pg_constraint"
    " WHERE contype = 'f' AND convalidated AND conrelid = ANY(CAST(:tables AS regclass[]))"
    " AND confrelid = ANY(CAST(:tables AS regclass[])) ORDER BY conrelid, conname"
).bindparams(_TABLES)
# An index as its CREATE INDEX statement, exactly as the migrations made it.
_INDEX_DEFINITION = text("SELECT pg_get_indexdef(CAST(:index AS regclass))")
# A unique constraint by what it holds unique, with its name: the migrations leave some unnamed, and PostgreSQL
# named those itself. Not one that a foreign key still in place relies on (one of a table outside the load, or
# a NOT VALID one, which is not dropped): that key would refuse its drop. The keys among the loaded tables are
# dropped before this is asked.
_UNIQUE_BY_DEFINITION = text(
    "SELECT quote_ident(conname) FROM pg_constraint AS unique_key WHERE contype = 'u'"
    " AND conrelid = CAST(:table AS regclass) AND pg_get_constraintdef(oid) = :definition"
    " AND NOT EXISTS (SELECT 1 FROM pg_constraint AS foreign_key WHERE foreign_key.contype = 'f'"
    " AND foreign_key.conindid = unique_key.conindid)")
# Dropping a key takes the tables' owner (or a member of its role), not just the right to write.
_OWNS_ALL = text(
    "SELECT bool_and(pg_has_role(relowner, 'USAGE')) FROM pg_class WHERE oid = ANY(CAST(:tables AS regclass[]))"
).bindparams(_TABLES)


@contextlib.contextmanager
def keys_checked_at_end(session: Session, tables: Sequence[Table], *, rows_coming: int,
                        indexes_built_after: Sequence[Index] = (), unique_built_after: Sequence[UniqueConstraint] = (),
                        will_commit: bool = False) -> Iterator[bool]:
    """Around an insert of ``rows_coming`` rows into ``tables``: on PostgreSQL, when they are many and
    every one of the tables is empty, the foreign keys among ``tables`` are dropped for the insert and
    added again (each row checked) when the block ends, inside the caller's transaction.

    ``indexes_built_after`` (indexes of ``tables`` that nothing inside the block reads) are dropped with
    them and built again from their stored definitions: one sort of every row instead of one insert into
    the index per row. ``unique_built_after`` (unique constraints of ``tables`` whose index nothing inside the
    block reads) likewise: added again at the end, they check every row at once, and a duplicate fails the
    load there instead of when its row came in.

    Yields whether it did so. It does not when a table holds a row, when another transaction holds a lock
    on one (it never waits for that), or when the database user does not own them: the insert then goes
    in with its keys in place, as always. The drops happen in a savepoint: a block that raises rolls back
    to the keys as they were, whatever its caller does next.

    On SQLite, under the same conditions of size and emptiness, the keys are deferred instead: SQLite checks
    them at the commit, and they are checked when the block ends too unless ``will_commit``.
    ``indexes_built_after`` and ``unique_built_after`` do nothing there.

    ``will_commit``: the caller commits what the block wrote once it ends well (a sync, but not its dry run).
    SQLite's own check at the commit is then the only one: it refuses the commit of a row naming nothing as
    surely as the look at the end, which reads every row of every table again (0.2 s of a first sync of
    200,000). Only a caller that ends in a rollback needs the look, to fail as its commit would.
    """
    strangers = [constraint.name for constraint in unique_built_after if constraint.table not in tables]
    if strangers:  # its table would be neither checked empty nor locked
        raise ValueError(f"unique constraints of tables outside the load: {', '.join(map(str, strangers))}")
    connection = session.connection()
    if connection.dialect.name not in ("postgresql", "sqlite") or rows_coming < CHECK_AT_END_FROM or not tables:
        yield False
        return
    names = [connection.dialect.identifier_preparer.format_table(table) for table in tables]
    if connection.dialect.name == "sqlite":
        # The write transaction holds SQLite's only write lock: nobody can add a row after this look.
        if not _all_empty(connection, names):
            yield False
            return
        connection.exec_driver_sql("PRAGMA defer_foreign_keys = ON")
        yield True
        # SQLite counts the rows naming nothing while the keys are deferred, and refuses a commit while the
        # count is not zero. A dry run never commits: it must fail here, as the real run would at its commit.
        # (The pragma stays on until the transaction ends: switched off before, it would forget the count.)
        # SQLite counts only with its foreign keys on, which every connection of ours sets (adapter.db); on one
        # that does not, the look here is the only check there is.
        if not will_commit or not connection.exec_driver_sql("PRAGMA foreign_keys").scalar():
            _sqlite_keys_checked(connection, names)
        return
    if not _lock_while_empty(session, names):
        yield False
        return
    with session.begin_nested():
        connection = session.connection()  # what emits the SAVEPOINT: SQLAlchemy begins a nested one lazily
        keys = connection.execute(_KEYS_AMONG, {"tables": names}).all()
        for table_name, key_name, _definition in keys:
            connection.exec_driver_sql(f"ALTER TABLE {table_name} DROP CONSTRAINT {key_name}")
        index_names = [connection.dialect.identifier_preparer.format_index(index) for index in indexes_built_after]
        index_definitions = [connection.execute(_INDEX_DEFINITION, {"index": name}).scalar_one()
                             for name in index_names]
        for name in index_names:
            connection.exec_driver_sql(f"DROP INDEX {name}")
        uniques = [unique for constraint in unique_built_after
                   if (unique := _unique_named(connection, constraint)) is not None]
        for table_name, name, _definition in uniques:
            connection.exec_driver_sql(f"ALTER TABLE {table_name} DROP CONSTRAINT {name}")
        log.info("first load into empty tables: %d foreign keys and %d unique constraints are checked once at "
                 "the end, not row by row, and %d indexes built then", len(keys), len(uniques), len(index_names))
        yield True
        for definition in index_definitions:
            connection.exec_driver_sql(definition)
        # Before the keys: a key needs the unique index of what it names.
        for table_name, name, definition in uniques:
            connection.exec_driver_sql(f"ALTER TABLE {table_name} ADD CONSTRAINT {name} {definition}")
        for table_name, key_name, definition in keys:
            connection.exec_driver_sql(f"ALTER TABLE {table_name} ADD CONSTRAINT {key_name} {definition}")


def _unique_named(connection, constraint: UniqueConstraint  # type: ignore[no-untyped-def]
                  ) -> tuple[str, str, str] | None:
    """(table, name, definition) of ``constraint`` as the database holds it, or None when it holds no such one
    that may be dropped: then it stays, and checks each row as it comes in."""
    preparer = connection.dialect.identifier_preparer
    table_name = preparer.format_table(constraint.table)
    definition = f"UNIQUE ({', '.join(preparer.quote(column.name) for column in constraint.columns)})"
    name = connection.execute(_UNIQUE_BY_DEFINITION, {"table": table_name, "definition": definition}).scalar()
    return None if name is None else (table_name, name, definition)


def _sqlite_keys_checked(connection, names: Sequence[str]) -> None:  # type: ignore[no-untyped-def]
    """Raise IntegrityError, naming the tables only, if a row of ``names`` names a row that does not exist."""
    failing = [name for name in names if connection.exec_driver_sql(f"PRAGMA foreign_key_check({name})").first()]
    if failing:
        raise IntegrityError("PRAGMA foreign_key_check", None, sqlite3.IntegrityError(
            f"FOREIGN KEY constraint failed: rows of {', '.join(failing)} name rows that do not exist"))


def _lock_while_empty(session: Session, names: Sequence[str]) -> bool:
    """Lock ``names`` for this transaction if they are all empty, can be locked at once and are ours to alter.

    Emptiness is asked first without a lock, so that a later sync of a filled database never locks its
    readers out, not even for a moment. It is asked again under the lock: a run that committed rows
    meanwhile (another source's first load) is seen. The lock is taken in a savepoint and given back by
    rolling it back when the answer is no: a lock taken in a savepoint ends with it (PostgreSQL's explicit
    locking), so a table that turned out to hold rows is not kept from its readers for the rest of the run.
    """
    connection = session.connection()
    if not _all_empty(connection, names):
        return False
    if not connection.execute(_OWNS_ALL, {"tables": list(names)}).scalar_one():
        log.info("first load: the database user does not own the tables, so their foreign keys are checked "
                 "row by row (slower); run the sync as the tables' owner to load faster")
        return False
    savepoint = session.begin_nested()
    connection = session.connection()  # emits the SAVEPOINT (see keys_checked_at_end)
    try:
        # Under this lock the load also takes its ids in one move (adapter.bulk.reserve_ids, which checks it).
        connection.exec_driver_sql(f"LOCK TABLE {', '.join(names)} IN ACCESS EXCLUSIVE MODE NOWAIT")
    except OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) != _LOCK_NOT_AVAILABLE:
            raise  # a lost connection or a cancelled statement: the run fails, as it would anywhere else
        savepoint.rollback()
        log.info("first load: another connection is using the tables, so their foreign keys are checked row "
                 "by row (slower); nothing else is needed")
        return False
    if not _all_empty(connection, names):
        savepoint.rollback()
        return False
    savepoint.commit()
    return True


def _all_empty(connection, names: Sequence[str]) -> bool:  # type: ignore[no-untyped-def]
    return all(connection.exec_driver_sql(f"SELECT 1 FROM {name} LIMIT 1").first() is None for name in names)
