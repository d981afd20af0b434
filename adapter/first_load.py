"""A municipality's first load on PostgreSQL: its foreign keys checked once, at the end, not row by row.

PostgreSQL checks a foreign key on every inserted row with a trigger that looks up and locks the row it
names. A first sync of 200,000 cardholders inserts some 1.4 million rows that name another (passes and
budgets name their cardholder, ledger entries their budget), and those checks were about half of the
database's work: 3.7 s of 7.3 s in a measurement of the same rows. Adding a foreign key to a filled table
checks every row in one join instead (0.35 s for all of them).

So, around a large insert into tables that are all empty, the foreign keys between them are dropped and
added again before the commit, in the same transaction. Every row is still checked before anyone can see
it: a row that names nothing makes the re-adding fail, and the whole run rolls back with the keys as they
were. Dropping a key locks both its tables against readers until the commit; that is why this is done
only while the tables are empty, when a reader (the counter, the dashboard) has nothing to find yet. It
then waits for the commit instead of being told "unknown pass".

On SQLite a row-by-row check costs next to nothing (a primary key look-up in the same file); nothing
changes there.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence

from sqlalchemy import Table, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, TEXT
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

log = logging.getLogger("adapter.first_load")

# Fewer new rows than this go in with their keys checked row by row: dropping and adding keys would not pay.
CHECK_AT_END_FROM = 50_000

_KEYS_AMONG = text(
    "SELECT conrelid::regclass::text, quote_ident(conname), pg_get_constraintdef(oid) FROM pg_constraint"
    " WHERE contype = 'f' AND conrelid = ANY(CAST(:tables AS regclass[]))"
    " AND confrelid = ANY(CAST(:tables AS regclass[])) ORDER BY conrelid, conname"
).bindparams(bindparam("tables", type_=ARRAY(TEXT)))


@contextlib.contextmanager
def keys_checked_at_end(session: Session, tables: Sequence[Table], *, rows_coming: int) -> Iterator[bool]:
    """Around an insert of ``rows_coming`` rows into ``tables``: on PostgreSQL, when they are many and
    every one of the tables is empty, the foreign keys among ``tables`` are dropped for the insert and
    added again (each row checked) when the block ends, inside the caller's transaction.

    Yields whether it did so. It does not when a table holds a row or another transaction holds a lock
    on one (it never waits for that): the insert then goes in with its keys in place, as always.
    """
    connection = session.connection()
    if connection.dialect.name != "postgresql" or rows_coming < CHECK_AT_END_FROM or not tables:
        yield False
        return
    names = [connection.dialect.identifier_preparer.format_table(table) for table in tables]
    if not _lock_while_empty(session, names):
        yield False
        return
    keys = connection.execute(_KEYS_AMONG, {"tables": names}).all()
    for table_name, key_name, _definition in keys:
        connection.exec_driver_sql(f"ALTER TABLE {table_name} DROP CONSTRAINT {key_name}")
    log.info("first load into empty tables: %d foreign keys are checked once at the end, not row by row",
             len(keys))
    yield True
    for table_name, key_name, definition in keys:
        connection.exec_driver_sql(f"ALTER TABLE {table_name} ADD CONSTRAINT {key_name} {definition}")


def _lock_while_empty(session: Session, names: Sequence[str]) -> bool:
    """Lock ``names`` for this transaction if they can be locked at once and are all empty.

    The lock is taken in a savepoint and given back by rolling it back when the answer is no: a lock
    taken in a savepoint ends with it (PostgreSQL's explicit locking), so a table that turned out to hold
    rows is not kept from its readers for the rest of the run. Emptiness is judged under the lock, so a
    run that commits rows meanwhile (another source's first load) is seen.
    """
    savepoint = session.begin_nested()
    connection = session.connection()
    try:
        connection.exec_driver_sql(f"LOCK TABLE {', '.join(names)} IN ACCESS EXCLUSIVE MODE NOWAIT")
    except OperationalError:  # another transaction holds a lock on one of them: take the usual path
        savepoint.rollback()
        return False
    if any(connection.exec_driver_sql(f"SELECT 1 FROM {name} LIMIT 1").first() is not None for name in names):
        savepoint.rollback()
        return False
    savepoint.commit()
    return True
