"""An index on the pass that replaced a pass, holding replaced passes only.

``passes.replaced_by_id`` names another pass. Without an index on it, SQLite finds the passes naming a
pass by reading every pass. It has to whenever a pass is inserted while a deferred foreign key is
outstanding: a first load on SQLite writes each cardholder after its passes (``adapter.first_load``),
and without this index every pass inserted read the whole table, which made a first sync of 200,000
rows run for minutes. Only replaced passes are in it, so the passes a sync inserts add nothing to it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 16:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

_REPLACED = sa.text("replaced_by_id IS NOT NULL")


def upgrade() -> None:
    op.create_index('ix_passes_replaced_by_id', 'passes', ['replaced_by_id'],
                    postgresql_where=_REPLACED, sqlite_where=_REPLACED)


def downgrade() -> None:
    op.drop_index('ix_passes_replaced_by_id', table_name='passes')
