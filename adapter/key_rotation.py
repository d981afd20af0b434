"""Key rotation: rewrite every stored personal value under the newest encryption key.

An operator puts a new key first in ``ADAPTER_ENCRYPTION_KEYS`` (old keys after
it), restarts, and runs ``stadspas-adapter keys rotate``. New writes already use
the new key; this rewrites the old rows. Only when ``keys check`` reports no
row under an old key may the old key be removed from the environment.

Every ``*_encrypted`` column of every table is covered, found from the schema,
so a table another module adds later is rotated too. Rows are read in pages
ordered by primary key (keyset paging: no OFFSET that slows down as it goes)
and each page is one transaction. A run that crashes leaves every finished
page rotated; running it again rewrites only what is still under an old key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from sqlalchemy import Column, Table, select, update

from adapter import audit
from adapter.crypto import TokenKey, Vault
from adapter.db import Database
from adapter.models import Base

ENCRYPTED_SUFFIX = "_encrypted"
DEFAULT_BATCH_SIZE = 1_000


@dataclass
class TableProgress:
    table: str
    rows_examined: int = 0
    rows_rewritten: int = 0
    values_rewritten: int = 0
    batches: int = 0


@dataclass
class RotationReport:
    tables: list[TableProgress] = field(default_factory=list)
    # The old tokens were made unreadable on disk (see Database.scrub_removed); False: an open reader kept some
    # until the next check-point or vacuum.
    scrubbed: bool = True

    @property
    def rows_rewritten(self) -> int:
        return sum(table.rows_rewritten for table in self.tables)

    @property
    def rows_examined(self) -> int:
        return sum(table.rows_examined for table in self.tables)


@dataclass(frozen=True)
class KeyStatus:
    table: str
    rows_with_personal_data: int
    rows_under_old_keys: int  # readable under an older configured key: `keys rotate` rewrites them
    rows_unreadable: int = 0  # under no configured key: the key they were written with is missing


class UnreadableRows(Exception):
    """A row is encrypted under a key that is not configured: rotating cannot read it."""


UNREADABLE_ADVICE = ("cannot be read with any key in ADAPTER_ENCRYPTION_KEYS: the key they were written with is "
                     "missing (a new key pair instead of the stored one, a database restored from a backup made "
                     "before a key rotation whose old key was since removed, or a lost var/dev-keys.json in "
                     "development). Put that key back, after the newest; `keys rotate` cannot rewrite what it "
                     "cannot read")


ProgressCallback = Callable[[TableProgress], None]


def encrypted_tables() -> list[tuple[Table, list[Column]]]:
    """Every table with personal columns, and those columns."""
    found = []
    for table in Base.metadata.sorted_tables:
        columns = [column for column in table.columns if column.name.endswith(ENCRYPTED_SUFFIX)]
        if columns:
            if len(table.primary_key.columns) != 1:
                raise RuntimeError(f"{table.name}: key rotation pages by a single-column primary key")
            found.append((table, columns))
    return found


def rotate(db: Database, vault: Vault, *, actor: str, batch_size: int = DEFAULT_BATCH_SIZE,
           on_batch: ProgressCallback | None = None) -> RotationReport:
    """Re-encrypt every value not under the newest key; one transaction per ``batch_size`` rows.

    ``on_batch`` is called after each committed batch (progress reporting; tests
    raise from it to simulate a crash). The audit record ``keys.rotated`` is
    written when every table is done.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    report = RotationReport()
    for table, columns in encrypted_tables():
        progress = TableProgress(table.name)
        report.tables.append(progress)
        for _ in _rotate_table(db, vault, table, columns, batch_size, progress):
            if on_batch is not None:
                on_batch(progress)
    with db.write() as session:
        audit.record(session, actor, "keys.rotated", "encryption-keys",
                     rows_examined=report.rows_examined, rows_rewritten=report.rows_rewritten,
                     tables={table.table: table.rows_rewritten for table in report.tables})
    # The tokens under the old key must not outlive the rewrite on disk: that key is about to be retired,
    # perhaps because it leaked. Also when this run rewrote nothing: it may be the rerun of one that stopped
    # after its rewrite, before or during this step (a long VACUUM interrupted), and nothing else redoes it.
    report.scrubbed = db.scrub_removed([table.table for table in report.tables]) if report.tables else True
    return report


def check(db: Database, vault: Vault, *, batch_size: int = DEFAULT_BATCH_SIZE) -> list[KeyStatus]:
    """Per table: how many rows hold personal data, and how many of them still use an old key."""
    statuses = []
    for table, columns in encrypted_tables():
        with_data = stale = unreadable = 0
        for rows in _pages(db, table, columns, batch_size):
            for row in rows:
                tokens = [token for token in (row._mapping[column.name] for column in columns) if token is not None]
                if tokens:
                    with_data += 1
                keys = {vault.key_of(token) for token in tokens}
                if TokenKey.MISSING in keys:
                    unreadable += 1
                elif TokenKey.OLDER in keys:
                    stale += 1
        statuses.append(KeyStatus(table.name, with_data, stale, unreadable))
    return statuses


def _rotate_table(db: Database, vault: Vault, table: Table, columns: list[Column], batch_size: int,
                  progress: TableProgress) -> Iterator[None]:
    key = next(iter(table.primary_key.columns))
    last_key = None
    while True:
        with db.write() as session:
            query = select(key, *columns).order_by(key).limit(batch_size).with_for_update()
            if last_key is not None:
                query = query.where(key > last_key)
            rows = session.execute(query).all()
            if not rows:
                return
            changes = []
            for row in rows:
                values = row._mapping
                keys = {column.name: vault.key_of(values[column.name]) for column in columns
                        if values[column.name] is not None}
                if TokenKey.MISSING in keys.values():
                    raise UnreadableRows(f"{table.name} row {values[key.name]} {UNREADABLE_ADVICE}; nothing of "
                                         "this batch was changed")
                rewritten = {name: vault.reencrypt(values[name]) for name, found in keys.items()
                             if found is TokenKey.OLDER}
                if rewritten:
                    changes.append((values[key.name], rewritten))
                    progress.values_rewritten += len(rewritten)
            for row_key, rewritten in changes:
                # Only rows that changed are written, so ``updated_at`` moves for these rows alone.
                session.execute(update(table).where(key == row_key).values(**rewritten))
            last_key = rows[-1]._mapping[key.name]
            progress.rows_examined += len(rows)
            progress.rows_rewritten += len(changes)
            progress.batches += 1
        yield


def _pages(db: Database, table: Table, columns: list[Column], batch_size: int) -> Iterator[list]:
    key = next(iter(table.primary_key.columns))
    last_key = None
    while True:
        with db.read() as session:
            query = select(key, *columns).order_by(key).limit(batch_size)
            if last_key is not None:
                query = query.where(key > last_key)
            rows = session.execute(query).all()
        if not rows:
            return
        yield rows
        last_key = rows[-1]._mapping[key.name]
