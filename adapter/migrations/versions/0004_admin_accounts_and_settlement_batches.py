"""Admin accounts for the dashboard, and settlement batches that link each paid redemption and reversal once.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 11:05:50.938167
"""

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('admin_accounts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('password_hash', sa.String(length=200), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('settlement_batches',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('period', sa.String(length=7), nullable=False),
    sa.Column('message_id', sa.String(length=35), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('execution_date', sa.Date(), nullable=False),
    sa.Column('created_by', sa.String(length=128), nullable=False),
    sa.Column('debtor_name', sa.String(length=70), nullable=False),
    sa.Column('debtor_iban', sa.String(length=34), nullable=False),
    sa.Column('debtor_bic', sa.String(length=11), nullable=True),
    sa.Column('total_payable_cents', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('message_id'),
    sa.UniqueConstraint('period')
    )
    op.create_table('settlement_lines',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('batch_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('merchant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('merchant_name', sa.String(length=200), nullable=False),
    sa.Column('iban', sa.String(length=34), nullable=True),
    sa.Column('redemptions', sa.Integer(), nullable=False),
    sa.Column('redeemed_cents', sa.BigInteger(), nullable=False),
    sa.Column('reversed_cents', sa.BigInteger(), nullable=False),
    sa.Column('net_cents', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('end_to_end_id', sa.String(length=35), nullable=False),
    sa.ForeignKeyConstraint(['batch_id'], ['settlement_batches.id'], ),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('batch_id', 'merchant_id', name='uq_settlement_lines_batch_merchant')
    )
    with op.batch_alter_table('settlement_lines', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_settlement_lines_batch_id'), ['batch_id'], unique=False)

    op.create_table('settlement_items',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('batch_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('line_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('redemption_id', sa.String(length=36), nullable=True),
    sa.Column('reversal_id', sa.String(length=36), nullable=True),
    sa.Column('amount_cents', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['batch_id'], ['settlement_batches.id'], ),
    sa.ForeignKeyConstraint(['line_id'], ['settlement_lines.id'], ),
    sa.ForeignKeyConstraint(['redemption_id'], ['redemptions.id'], ),
    sa.ForeignKeyConstraint(['reversal_id'], ['reversals.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('redemption_id'),
    sa.UniqueConstraint('reversal_id')
    )
    with op.batch_alter_table('settlement_items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_settlement_items_batch_id'), ['batch_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_settlement_items_line_id'), ['line_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('settlement_items', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_settlement_items_line_id'))
        batch_op.drop_index(batch_op.f('ix_settlement_items_batch_id'))

    op.drop_table('settlement_items')
    with op.batch_alter_table('settlement_lines', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_settlement_lines_batch_id'))

    op.drop_table('settlement_lines')
    op.drop_table('settlement_batches')
    op.drop_table('admin_accounts')
