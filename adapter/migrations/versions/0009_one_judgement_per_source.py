"""What the grants last judged the children under: one row per source, not one per child.

``grant_evaluations`` held the rules key each child was judged under, a row per child: a first sync of a city
wrote 200,000 of them, and on PostgreSQL writing them and checking their key to the cardholders took 0.7 s
of its grants. The sync knows which children it changed, and those it judges again whatever the key; every
other child of a source was judged under the same rules (a new key judges them all). So one row per source
says as much: ``grant_judgements`` (source, rules key, when).

A source whose every active cardholder was judged under one and the same key keeps it; any other source gets
no row, and its next sync judges every active child once (as after a change of rules: it grants nothing twice,
the budgets' unique key and the existing budgets see to that). Going back leaves ``grant_evaluations`` empty,
with the same effect on the next sync.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 15:00:00
"""

from datetime import datetime, timezone

from alembic import op
import sqlalchemy as sa

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

# Per source: its one key, when every active cardholder of it was judged and all under that key.
_SHARED_KEYS = sa.text(
    "SELECT c.source, MIN(e.rules_key) FROM cardholders AS c"
    " LEFT JOIN grant_evaluations AS e ON e.cardholder_id = c.id WHERE c.status = 'active' GROUP BY c.source"
    " HAVING COUNT(e.rules_key) = COUNT(*) AND MIN(e.rules_key) = MAX(e.rules_key)")


def upgrade() -> None:
    judgements = op.create_table(
        'grant_judgements',
        sa.Column('source', sa.String(length=64).with_variant(sa.String(length=64, collation='C'), 'postgresql'),
                  nullable=False),
        sa.Column('rules_key', sa.String(length=64), nullable=False),
        sa.Column('judged_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('source'),
    )
    shared = op.get_bind().execute(_SHARED_KEYS).all()
    if shared:
        # When the key was carried over: the children's own times go with their rows.
        now = datetime.now(timezone.utc)
        op.bulk_insert(judgements, [{'source': source, 'rules_key': rules_key, 'judged_at': now}
                                    for source, rules_key in shared])
    op.drop_table('grant_evaluations')


def downgrade() -> None:
    op.create_table(
        'grant_evaluations',
        sa.Column('cardholder_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('rules_key', sa.String(length=64), nullable=False),
        sa.Column('evaluated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['cardholder_id'], ['cardholders.id'], ),
        sa.PrimaryKeyConstraint('cardholder_id'),
    )
    op.drop_table('grant_judgements')
