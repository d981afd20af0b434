"""Schema migrations (Alembic), run the same way on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from adapter.db import Database

# Alembic is imported where it is used: every CLI command (the nightly sync too) imports this module
# through the CLI, and loading Alembic costs a noticeable part of a short command's start-up.
if TYPE_CHECKING:
    from alembic.config import Config

    from adapter.crypto import Vault

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# The key under which a migration finds the encryption keys (``needs_vault``) in the Alembic config.
VAULT_ATTRIBUTE = "vault"

VaultProvider = Callable[[], "Vault"]


class KeysNeeded(RuntimeError):
    """A migration must re-encrypt stored personal data and was given no keys."""


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
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        config.attributes[VAULT_ATTRIBUTE] = vault
        command.upgrade(config, revision)


def downgrade(database: Database, revision: str, *, vault: VaultProvider | None = None) -> None:
    from alembic import command

    config = alembic_config(database)
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        config.attributes[VAULT_ATTRIBUTE] = vault
        command.downgrade(config, revision)


def needs_vault(provider: VaultProvider | None, why: str) -> Vault:
    """The keys for a migration that re-encrypts rows; a refusal an operator can act on when there are none."""
    from adapter.crypto import KeysMissing

    advice = ("run `stadspas-adapter db upgrade` with the same ADAPTER_ENCRYPTION_KEYS and ADAPTER_BLIND_INDEX_KEY "
              "the service uses (new keys cannot read the stored rows); nothing was changed")
    if provider is None:
        raise KeysNeeded(f"{why}; {advice}")
    try:
        return provider()
    except KeysMissing as exc:
        raise KeysNeeded(f"{why}, and the keys are missing ({exc}); {advice}") from None


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config(Database("sqlite://")))
    return script.get_current_head() or ""


def current_revision(database: Database) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with database.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def is_current(database: Database) -> bool:
    return current_revision(database) == head_revision()
