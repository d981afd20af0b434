"""One encrypted token per cardholder for BSN, names and birth date, instead of one token per field.

Six Fernet encryptions per cardholder were the largest single cost of a first sync; one token over all
six fields (adapter.personal) costs one. Stored rows are re-encrypted here, which needs the encryption
keys: ``adapter.migrate.upgrade`` hands them in (``stadspas-adapter db upgrade`` does), and only asked
for when a row holds personal data, so an empty database migrates without keys. Without keys and with
data the migration refuses before anything is committed. The downgrade restores the six columns the
same way. The blind index and the content hash do not depend on the layout and stay as they are.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 13:40:00
"""

from collections.abc import Callable, Iterator, Sequence
from datetime import date

import sqlalchemy as sa
from alembic import context, op

from adapter import migrate
from adapter.crypto import Vault
from adapter.personal import PersonalFields, open_sealed, seal

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

FIELDS = ("bsn", "first_names", "initials", "surname_prefix", "surname", "birth_date")
FIELD_COLUMNS = tuple(f"{name}_encrypted" for name in FIELDS)
TOKEN_COLUMN = "personal_encrypted"
PAGE_SIZE = 1_000


def upgrade() -> None:
    # Column first: on PostgreSQL it locks the table, so no row can slip in between the check and the copy.
    op.add_column('cardholders', sa.Column(TOKEN_COLUMN, sa.Text(), nullable=True))
    if _holds_personal_data(FIELD_COLUMNS):
        vault = _vault("cardholders hold personal data that this migration re-encrypts as one token each")
        _rewrite(FIELD_COLUMNS, (TOKEN_COLUMN,), lambda row: {TOKEN_COLUMN: seal(vault, _fields_of(vault, row))})
    for column in FIELD_COLUMNS:
        op.drop_column('cardholders', column)


def downgrade() -> None:
    for column in FIELD_COLUMNS:
        op.add_column('cardholders', sa.Column(column, sa.Text(), nullable=True))
    if _holds_personal_data((TOKEN_COLUMN,)):
        vault = _vault("cardholders hold personal data that going back re-encrypts as one token per field")
        _rewrite((TOKEN_COLUMN,), FIELD_COLUMNS, lambda row: _columns_of(vault, open_sealed(vault, row[TOKEN_COLUMN])))
    op.drop_column('cardholders', TOKEN_COLUMN)


def _vault(why: str) -> Vault:
    return migrate.needs_vault(context.config.attributes.get(migrate.VAULT_ATTRIBUTE), why)


def _cardholders(columns: Sequence[str]) -> sa.TableClause:
    return sa.table('cardholders', sa.column('id', sa.BigInteger()), *(sa.column(name, sa.Text()) for name in columns))


def _holds_personal_data(columns: Sequence[str]) -> bool:
    table = _cardholders(columns)
    query = sa.select(table.c.id).where(sa.or_(*(table.c[name].is_not(None) for name in columns))).limit(1)
    return op.get_bind().execute(query).first() is not None


def _rewrite(read: Sequence[str], write: Sequence[str], convert: Callable[[dict], dict]) -> None:
    """Every row with personal data, page by page (keyset on id), written back through ``convert``."""
    table = _cardholders([*read, *write])
    statement = table.update().where(table.c.id == sa.bindparam('_id'))
    for rows in _pages(table, read):
        op.get_bind().execute(statement, [{'_id': row['id'], **convert(row)} for row in rows])


def _pages(table: sa.TableClause, read: Sequence[str]) -> Iterator[list[dict]]:
    has_data = sa.or_(*(table.c[name].is_not(None) for name in read))
    last_id = None
    while True:
        query = sa.select(table.c.id, *(table.c[name] for name in read)).where(has_data)
        if last_id is not None:
            query = query.where(table.c.id > last_id)
        rows = [dict(row._mapping) for row in op.get_bind().execute(query.order_by(table.c.id).limit(PAGE_SIZE))]
        if not rows:
            return
        yield rows
        last_id = rows[-1]['id']


def _fields_of(vault: Vault, row: dict) -> PersonalFields:
    values = {name: vault.decrypt(row[f"{name}_encrypted"]) for name in FIELDS}
    birth = values.pop("birth_date")
    return PersonalFields(**values, birth_date=date.fromisoformat(birth) if birth else None)


def _columns_of(vault: Vault, personal: PersonalFields) -> dict[str, str | None]:
    columns = {f"{name}_encrypted": vault.encrypt(getattr(personal, name)) for name in FIELDS if name != "birth_date"}
    columns["birth_date_encrypted"] = vault.encrypt(personal.birth_date.isoformat() if personal.birth_date else None)
    return columns
