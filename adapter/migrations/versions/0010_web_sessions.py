"""Sign-ins on the web pages as rows, so that signing out ends them on the server (``adapter.web_sessions``);
and the idempotency records' fingerprints keyed.

Sessions signed in before this revision carry no row and are asked to sign in again.

A request's fingerprint was the SHA-256 of its canonical text, the full pass number in it: anyone with the
table could try an issuer's range of pass numbers against it. It is now a blind index over that SHA-256
(``adapter.crypto.request_fingerprint``), and the stored ones are keyed here the same way, so that a till's
retry of a payment made before the upgrade still matches its record. That needs the service's own
ADAPTER_BLIND_INDEX_KEY (with ADAPTER_ENCRYPTION_KEYS) when the table holds records. Going back leaves them
keyed: a retry across the downgrade is refused as a reused key.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 17:00:00
"""

from alembic import context, op
import sqlalchemy as sa

from adapter import migrate
from adapter.crypto import keyed_request_hash

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'web_sessions',
        sa.Column('id', sa.String(length=64).with_variant(sa.String(length=64, collation='C'), 'postgresql'),
                  nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('subject_id', sa.BigInteger(), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id'),
    )
    bind = op.get_bind()
    if bind.execute(sa.text("SELECT 1 FROM idempotency_records LIMIT 1")).first() is None:
        return
    hashes = migrate.needs_vault(context.config.attributes.get(migrate.VAULT_ATTRIBUTE),
                                 "idempotency records hold fingerprints that this migration keys").hashes
    records = sa.table('idempotency_records', sa.column('id', sa.BigInteger()), sa.column('request_hash', sa.String()))
    last_id = 0
    while True:
        rows = bind.execute(sa.select(records.c.id, records.c.request_hash).where(records.c.id > last_id)
                            .order_by(records.c.id).limit(_BATCH)).all()
        if not rows:
            return
        bind.execute(records.update().where(records.c.id == sa.bindparam('record_id'))
                     .values(request_hash=sa.bindparam('keyed')),
                     [{'record_id': record_id, 'keyed': keyed_request_hash(hashes, plain)}
                      for record_id, plain in rows])
        last_id = rows[-1][0]


_BATCH = 1000


def downgrade() -> None:
    op.drop_table('web_sessions')
