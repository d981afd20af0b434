"""Initial schema: households, cardholders, passes, budgets, the ledger, merchants, sync runs.

Ledger entries are append-only: triggers on both databases refuse UPDATE and DELETE.

Revision ID: 0001
Revises:
Create Date: 2026-11-29 10:53:35.296758
"""

from alembic import op
import sqlalchemy as sa

from adapter.schema_guards import create_append_only_triggers, drop_append_only_triggers


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('households',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('source_key', sa.String(length=128), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('source', 'source_key', name='uq_households_source_key')
    )
    op.create_table('merchants',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('categories', sa.String(length=500), nullable=False),
    sa.Column('iban', sa.String(length=34), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('sync_locks',
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('run_id', sa.BigInteger(), nullable=True),
    sa.Column('holder', sa.String(length=200), nullable=False),
    sa.Column('acquired_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('source')
    )
    op.create_table('sync_runs',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('status', sa.Enum('running', 'succeeded', 'failed', 'refused', 'dry_run', name='sync_status', native_enum=False, length=20), nullable=False),
    sa.Column('holder', sa.String(length=200), nullable=False),
    sa.Column('records_read', sa.Integer(), nullable=False),
    sa.Column('created', sa.Integer(), nullable=False),
    sa.Column('updated', sa.Integer(), nullable=False),
    sa.Column('unchanged', sa.Integer(), nullable=False),
    sa.Column('rejected', sa.Integer(), nullable=False),
    sa.Column('missing', sa.Integer(), nullable=False),
    sa.Column('deactivated', sa.Integer(), nullable=False),
    sa.Column('budgets_granted', sa.Integer(), nullable=False),
    sa.Column('forced', sa.Boolean(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('sync_runs', schema=None) as batch_op:
        batch_op.create_index('ix_sync_runs_source_started', ['source', 'started_at'], unique=False)

    op.create_table('cardholders',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('household_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('source_key', sa.String(length=128), nullable=False),
    sa.Column('bsn_encrypted', sa.Text(), nullable=True),
    sa.Column('bsn_index', sa.String(length=64), nullable=True),
    sa.Column('first_names_encrypted', sa.Text(), nullable=True),
    sa.Column('initials_encrypted', sa.Text(), nullable=True),
    sa.Column('surname_prefix_encrypted', sa.Text(), nullable=True),
    sa.Column('surname_encrypted', sa.Text(), nullable=True),
    sa.Column('birth_date_encrypted', sa.Text(), nullable=True),
    sa.Column('is_child', sa.Boolean(), nullable=True),
    sa.Column('content_hash', sa.String(length=64), nullable=True),
    sa.Column('status', sa.Enum('active', 'missing', 'inactive', name='holder_status', native_enum=False, length=20), nullable=False),
    sa.Column('missing_since', sa.Date(), nullable=True),
    sa.Column('deactivated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('pseudonymised_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['household_id'], ['households.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('source', 'source_key', name='uq_cardholders_source_key')
    )
    with op.batch_alter_table('cardholders', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cardholders_bsn_index'), ['bsn_index'], unique=False)
        batch_op.create_index(batch_op.f('ix_cardholders_household_id'), ['household_id'], unique=False)

    op.create_table('idempotency_records',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('merchant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('key', sa.String(length=128), nullable=False),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('outcome_json', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('merchant_id', 'key', name='uq_idempotency_merchant_key')
    )
    with op.batch_alter_table('idempotency_records', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_idempotency_records_created_at'), ['created_at'], unique=False)

    op.create_table('merchant_keys',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('merchant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('key_prefix', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key_hash')
    )
    with op.batch_alter_table('merchant_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_merchant_keys_merchant_id'), ['merchant_id'], unique=False)

    op.create_table('sync_record_outcomes',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('run_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('record_key', sa.String(length=200), nullable=False),
    sa.Column('outcome', sa.String(length=20), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['run_id'], ['sync_runs.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('sync_record_outcomes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sync_record_outcomes_run_id'), ['run_id'], unique=False)

    op.create_table('budgets',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('cardholder_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('rule_code', sa.String(length=64), nullable=False),
    sa.Column('rule_name', sa.String(length=200), nullable=False),
    sa.Column('rule_version', sa.Integer(), nullable=False),
    sa.Column('category', sa.String(length=64), nullable=True),
    sa.Column('period_key', sa.String(length=32), nullable=False),
    sa.Column('period_start', sa.Date(), nullable=False),
    sa.Column('period_end', sa.Date(), nullable=False),
    sa.Column('granted_cents', sa.BigInteger(), nullable=False),
    sa.Column('balance_cents', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.Enum('open', 'expired', name='budget_status', native_enum=False, length=20), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('balance_cents >= 0', name='ck_budgets_balance_not_negative'),
    sa.ForeignKeyConstraint(['cardholder_id'], ['cardholders.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('cardholder_id', 'rule_code', 'period_key', name='uq_budgets_child_rule_period')
    )
    with op.batch_alter_table('budgets', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_budgets_cardholder_id'), ['cardholder_id'], unique=False)

    op.create_table('passes',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('cardholder_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('pass_number', sa.String(length=32), nullable=False),
    sa.Column('valid_from', sa.Date(), nullable=True),
    sa.Column('valid_until', sa.Date(), nullable=True),
    sa.Column('status', sa.Enum('active', 'blocked', 'expired', 'replaced', 'inactive', name='pass_state', native_enum=False, length=20), nullable=False),
    sa.Column('replaced_by_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('missing_since', sa.Date(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['cardholder_id'], ['cardholders.id'], ),
    sa.ForeignKeyConstraint(['replaced_by_id'], ['passes.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('pass_number')
    )
    with op.batch_alter_table('passes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_passes_cardholder_id'), ['cardholder_id'], unique=False)

    op.create_table('redemptions',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('merchant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('budget_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('pass_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('amount_cents', sa.BigInteger(), nullable=False),
    sa.Column('reversed_cents', sa.BigInteger(), nullable=False),
    sa.Column('reference', sa.String(length=128), nullable=True),
    sa.Column('idempotency_key', sa.String(length=128), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('amount_cents > 0', name='ck_redemptions_amount_positive'),
    sa.CheckConstraint('reversed_cents >= 0 AND reversed_cents <= amount_cents', name='ck_redemptions_reversed'),
    sa.ForeignKeyConstraint(['budget_id'], ['budgets.id'], ),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'], ),
    sa.ForeignKeyConstraint(['pass_id'], ['passes.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('merchant_id', 'idempotency_key', name='uq_redemptions_merchant_key')
    )
    with op.batch_alter_table('redemptions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_redemptions_budget_id'), ['budget_id'], unique=False)
        batch_op.create_index('ix_redemptions_merchant_created', ['merchant_id', 'created_at'], unique=False)

    op.create_table('reversals',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('redemption_id', sa.String(length=36), nullable=False),
    sa.Column('amount_cents', sa.BigInteger(), nullable=False),
    sa.Column('reason', sa.String(length=500), nullable=False),
    sa.Column('actor', sa.String(length=128), nullable=False),
    sa.Column('returned_to_budget', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('amount_cents > 0', name='ck_reversals_amount_positive'),
    sa.ForeignKeyConstraint(['redemption_id'], ['redemptions.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('reversals', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_reversals_redemption_id'), ['redemption_id'], unique=False)

    op.create_table('ledger_entries',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('budget_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('kind', sa.Enum('grant', 'redemption', 'reversal', 'expiry', 'correction', name='entry_kind', native_enum=False, length=20), nullable=False),
    sa.Column('amount_cents', sa.BigInteger(), nullable=False),
    sa.Column('balance_after_cents', sa.BigInteger(), nullable=False),
    sa.Column('redemption_id', sa.String(length=36), nullable=True),
    sa.Column('reversal_id', sa.String(length=36), nullable=True),
    sa.Column('actor', sa.String(length=128), nullable=False),
    sa.Column('note', sa.String(length=500), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['budget_id'], ['budgets.id'], ),
    sa.ForeignKeyConstraint(['redemption_id'], ['redemptions.id'], ),
    sa.ForeignKeyConstraint(['reversal_id'], ['reversals.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.create_index('ix_ledger_entries_budget', ['budget_id', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_ledger_entries_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_ledger_entries_redemption_id'), ['redemption_id'], unique=False)

    create_append_only_triggers(op, "ledger_entries")


def downgrade() -> None:
    drop_append_only_triggers(op, "ledger_entries")
    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ledger_entries_redemption_id'))
        batch_op.drop_index(batch_op.f('ix_ledger_entries_created_at'))
        batch_op.drop_index('ix_ledger_entries_budget')

    op.drop_table('ledger_entries')
    with op.batch_alter_table('reversals', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_reversals_redemption_id'))

    op.drop_table('reversals')
    with op.batch_alter_table('redemptions', schema=None) as batch_op:
        batch_op.drop_index('ix_redemptions_merchant_created')
        batch_op.drop_index(batch_op.f('ix_redemptions_budget_id'))

    op.drop_table('redemptions')
    with op.batch_alter_table('passes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_passes_cardholder_id'))

    op.drop_table('passes')
    with op.batch_alter_table('budgets', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_budgets_cardholder_id'))

    op.drop_table('budgets')
    with op.batch_alter_table('sync_record_outcomes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sync_record_outcomes_run_id'))

    op.drop_table('sync_record_outcomes')
    with op.batch_alter_table('merchant_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_merchant_keys_merchant_id'))

    op.drop_table('merchant_keys')
    with op.batch_alter_table('idempotency_records', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_idempotency_records_created_at'))

    op.drop_table('idempotency_records')
    with op.batch_alter_table('cardholders', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cardholders_household_id'))
        batch_op.drop_index(batch_op.f('ix_cardholders_bsn_index'))

    op.drop_table('cardholders')
    with op.batch_alter_table('sync_runs', schema=None) as batch_op:
        batch_op.drop_index('ix_sync_runs_source_started')

    op.drop_table('sync_runs')
    op.drop_table('sync_locks')
    op.drop_table('merchants')
    op.drop_table('households')
