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

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

# (table, column, length, nullable) of each machine key.
MACHINE_KEYS = [
    ('households', 'source', 64, False),
    ('households', 'source_key', 128, False),
    ('cardholders', 'source', 64, False),
    ('cardholders', 'source_key', 128, False),
    ('cardholders', 'bsn_index', 64, True),
    ('passes', 'pass_number', 32, False),
    ('budgets', 'rule_code', 64, False),
    ('budgets', 'period_key', 32, False),
    ('merchant_keys', 'key_hash', 64, False),
    ('redemptions', 'idempotency_key', 128, True),
    ('idempotency_records', 'key', 128, False),
]


def upgrade() -> None:
    _collate('C')


def downgrade() -> None:
    _collate(None)


def _collate(collation: str | None) -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    for table, column, length, nullable in MACHINE_KEYS:
        # Without a collation the column takes its type's default again: the database's locale.
        op.alter_column(table, column, type_=sa.String(length, collation=collation),
                        existing_type=sa.String(length), existing_nullable=nullable)
