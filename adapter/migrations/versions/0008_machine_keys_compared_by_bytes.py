"""Keys only programs compare are compared byte by byte on PostgreSQL (``COLLATE "C"``).

Record keys and sources, pass numbers, the BSN blind index, rule codes and period keys, API key hashes
and idempotency keys (``adapter.models.machine_key``). Under the database's locale every comparison in
their indexes went through ``strcoll``; a first sync of 200,000 cardholders spent 0.12 s more of the
server's time copying the passes and 0.11 s more building the BSN index, and every counter request
compares a pass number, a key hash and an idempotency key. Equality does not change (a deterministic
collation calls two strings equal only when their bytes are), so no stored row can start to clash.

SQLite compares these bytewise already (its BINARY collation): nothing to do there.

On PostgreSQL each column's indexes are rebuilt, under a lock on its table: on a city's database this
takes seconds to a minute. Migrate while the API and the scheduler are stopped, as for every migration.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 00:30:00
"""

import itertools

from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

# (table, column, length) of each machine key, the columns of a table together.
MACHINE_KEYS = [
    ('households', 'source', 64),
    ('households', 'source_key', 128),
    ('cardholders', 'source', 64),
    ('cardholders', 'source_key', 128),
    ('cardholders', 'bsn_index', 64),
    ('passes', 'pass_number', 32),
    ('budgets', 'rule_code', 64),
    ('budgets', 'period_key', 32),
    ('merchant_keys', 'key_hash', 64),
    ('redemptions', 'idempotency_key', 128),
    ('idempotency_records', 'key', 128),
]


def upgrade() -> None:
    _collate('"C"')


def downgrade() -> None:
    _collate('"default"')  # the database's locale again


def _collate(collation: str) -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    # One ALTER TABLE per table: an index over two of its columns (source, source_key) is rebuilt once, not
    # once per column as alembic's alter_column would.
    for table, keys in itertools.groupby(MACHINE_KEYS, key=lambda key: key[0]):
        changes = ', '.join(f'ALTER COLUMN {column} TYPE VARCHAR({length}) COLLATE {collation}'
                            for _table, column, length in keys)
        op.execute(f'ALTER TABLE {table} {changes}')
