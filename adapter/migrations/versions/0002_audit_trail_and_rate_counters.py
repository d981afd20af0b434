"""Audit trail (append-only, hash-chained) and rate-limit counters.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 10:59:58.497201
"""

from alembic import op
import sqlalchemy as sa

from adapter.schema_guards import create_append_only_triggers, drop_append_only_triggers


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audit_entries',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=128), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('object_ref', sa.String(length=128), nullable=False),
    sa.Column('details_json', sa.Text(), nullable=False),
    sa.Column('previous_hash', sa.String(length=64), nullable=False),
    sa.Column('entry_hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('rate_counters',
    sa.Column('bucket', sa.String(length=128), nullable=False),
    sa.Column('window_start', sa.BigInteger(), nullable=False),
    sa.Column('hits', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('bucket', 'window_start')
    )
    create_append_only_triggers(op, "audit_entries")


def downgrade() -> None:
    drop_append_only_triggers(op, "audit_entries")
    op.drop_table('rate_counters')
    op.drop_table('audit_entries')
