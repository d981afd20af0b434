"""Each budget keeps its child's age band on its first day, so that the uptake report counts in the database.

Budgets opened before this revision have none: the next sync of their source works theirs out (it holds the
keys); until then the uptake report decrypts the birth dates of the budgets it counts, as it did before.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 01:00:00
"""

from alembic import op
import sqlalchemy as sa

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('budgets') as batch:
        batch.add_column(sa.Column('age_band', sa.String(length=8), nullable=True))
    op.create_index('ix_budgets_age_band_missing', 'budgets', ['id'], postgresql_where=sa.text('age_band IS NULL'),
                    sqlite_where=sa.text('age_band IS NULL'))


def downgrade() -> None:
    op.drop_index('ix_budgets_age_band_missing', table_name='budgets')
    with op.batch_alter_table('budgets') as batch:
        batch.drop_column('age_band')
