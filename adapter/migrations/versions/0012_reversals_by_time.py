"""An index on the reversals by time, for the reversals listing (``GET /v1/reversals``).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 01:30:00
"""

from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_reversals_created', 'reversals', ['created_at', 'id'])


def downgrade() -> None:
    op.drop_index('ix_reversals_created', table_name='reversals')
