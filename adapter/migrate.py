"""Schema migrations (Alembic), run the same way on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import functools
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, text

from adapter.db import SQLITE_BEGIN_IMMEDIATE, Database

# Alembic is imported where it is used: every CLI command (the nightly sync too) imports this module
# through the CLI, and loading Alembic costs a noticeable part of a short command's start-up.
if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from adapter.crypto import Vault

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# The key under which a migration finds the encryption keys (``needs_vault``) in the Alembic config.
VAULT_ATTRIBUTE = "vault"

VaultProvider = Callable[[], "Vault"]
# Every host of a scale-out runs `db upgrade` at its deployment, often at the same moment: a PostgreSQL advisory lock
# on this key makes them take turns (see ``_one_migration_at_a_time``).
MIGRATION_LOCK_KEY = int.from_bytes(hashlib.sha256(b"stadspas-adapter schema migration").digest()[:8], "big",
                                    signed=True)


class KeysNeeded(RuntimeError):
    """A migration must re-encrypt stored personal data and was given no keys."""


class SchemaNewerThanCode(RuntimeError):
    """The database was migrated by a newer version of this program than the one running here."""

    def __init__(self, current: str, newest_known: str):
        self.current, self.newest_known = current, newest_known
        super().__init__(
            f"the database is at schema revision {current}, which this version of stadspas-adapter does not know (its "
            f"newest is {newest_known}): a host running a newer version migrated it. Install that version here, as "
            "on the other hosts; nothing was changed")


def alembic_config(database: Database) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # configparser treats % specially; a URL-encoded password would break it.
    config.set_main_option("sqlalchemy.url", database.url.replace("%", "%%"))
    return config


def upgrade(database: Database, revision: str = "head", *, vault: VaultProvider | None = None) -> None:
    """Migrate forwards. ``vault`` is asked for the keys only if a migration must re-encrypt stored rows,
    so an empty database (a fresh install, a test) migrates without any keys."""
    from alembic import command

    config = alembic_config(database)
    with _keys_that_open_the_rows(), _one_migration_at_a_time(database) as connection:
        # Read under the lock: a host that waited sees what the other one left. Alembic itself would only say
        # "Can't locate revision", in a traceback, to an operator upgrading an older host of a scale-out.
        _refuse_a_newer_schema(_revision_on(connection))
        config.attributes["connection"] = connection
        config.attributes[VAULT_ATTRIBUTE] = vault
        command.upgrade(config, revision)


def downgrade(database: Database, revision: str, *, vault: VaultProvider | None = None) -> None:
    from alembic import command

    config = alembic_config(database)
    with _keys_that_open_the_rows(), _one_migration_at_a_time(database) as connection:
        config.attributes["connection"] = connection
        config.attributes[VAULT_ATTRIBUTE] = vault
        command.downgrade(config, revision)


@contextlib.contextmanager
def _keys_that_open_the_rows() -> Iterator[None]:
    """A migration that re-encrypts rows was handed keys that cannot open them: `db upgrade` run from a shell
    without the service's own ADAPTER_ENCRYPTION_KEYS (or, in development mode, with demo keys made on the spot).
    The migration's one transaction is rolled back by then; say so and what to run, not a traceback."""
    from cryptography.fernet import InvalidToken

    try:
        yield
    except InvalidToken:
        raise KeysNeeded(f"stored personal data cannot be decrypted with the ADAPTER_ENCRYPTION_KEYS given; "
                         f"{_KEYS_ADVICE}") from None


@contextlib.contextmanager
def _one_migration_at_a_time(database: Database) -> Iterator[Connection]:
    """The migration's one transaction, begun once no other process is migrating this database.

    Without it two hosts upgrading at once both see no ``alembic_version`` table (or the same old revision), both
    create it, and the second fails on PostgreSQL's catalog with a unique violation, a traceback at a deployment.
    The lock is taken before Alembic reads the revision and is freed at the commit, so the one that waited reads
    the revision the other left and has nothing (or only the rest) to do. SQLite: the transaction takes the
    database's write lock up front (``BEGIN IMMEDIATE``), which serialises the same way.
    """
    engine = database.engine.execution_options(**{SQLITE_BEGIN_IMMEDIATE: True}) if database.is_sqlite \
        else database.engine
    with engine.begin() as connection:
        if database.is_postgres:
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        yield connection


def needs_vault(provider: VaultProvider | None, why: str) -> Vault:
    """The keys for a migration that re-encrypts rows; a refusal an operator can act on when there are none."""
    from adapter.crypto import KeysMissing

    if provider is None:
        raise KeysNeeded(f"{why}; {_KEYS_ADVICE}")
    try:
        return provider()
    except KeysMissing as exc:
        raise KeysNeeded(f"{why}, and the keys are missing ({exc}); {_KEYS_ADVICE}") from None


_KEYS_ADVICE = ("run `stadspas-adapter db upgrade` with the same ADAPTER_ENCRYPTION_KEYS and ADAPTER_BLIND_INDEX_KEY "
                "the service uses (new keys cannot read the stored rows); nothing was changed")


def _revision_on(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def _refuse_a_newer_schema(current: str | None) -> None:
    if current is not None and current not in known_revisions():
        raise SchemaNewerThanCode(current, head_revision())


# The migrations are files of this version's code, read once per process: the readiness check asks about them on
# every probe of a load balancer, and reading the folder took 10 ms.
@functools.cache
def known_revisions() -> frozenset[str]:
    """Every schema revision this version's migrations know."""
    return frozenset(migration.revision for migration in _scripts().walk_revisions())


@functools.cache
def head_revision() -> str:
    return _scripts().get_current_head() or ""


def _scripts() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(Database("sqlite://")))


def current_revision(database: Database) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with database.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def is_current(database: Database) -> bool:
    """The schema is this version's newest; raises SchemaNewerThanCode when a newer version migrated it."""
    current = current_revision(database)
    _refuse_a_newer_schema(current)
    return current == head_revision()


def schema_problem(database: Database) -> str | None:
    """Why this version cannot work on the database's schema, worded for the operator who starts it; None when
    the schema is this version's. A process started on an older schema answers every request with an error and
    fails every night's sync (a column it reads is not there yet); one started before `db upgrade` could also
    write rows the upgrade then converts a second time."""
    current = current_revision(database)  # read once: every start of the API and the scheduler asks
    try:
        _refuse_a_newer_schema(current)
    except SchemaNewerThanCode as exc:
        return str(exc)
    if current == head_revision():
        return None
    found = f"is at schema revision {current}" if current else "has no schema yet"
    return (f"the database {found} and this version of stadspas-adapter needs {head_revision()}: run "
            "`stadspas-adapter db upgrade` first (with the service's ADAPTER_ENCRYPTION_KEYS and "
            "ADAPTER_BLIND_INDEX_KEY), then start it again; nothing was changed")
