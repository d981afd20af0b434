"""Grant evaluations: which rules each child was last judged under, so the nightly grants skip the unchanged.

Revision ID: 0003
Revises: 0002
"""

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('grant_evaluations',
    sa.Column('cardholder_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('rules_key', sa.String(length=64), nullable=False),
    sa.Column('evaluated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['cardholder_id'], ['cardholders.id'], ),
    sa.PrimaryKeyConstraint('cardholder_id')
    )


def downgrade() -> None:
    op.drop_table('grant_evaluations')
