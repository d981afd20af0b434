"""Database and ledger maintenance commands."""

from __future__ import annotations

import click

from adapter import ledger, migrate
from adapter.cli.base import CliContext, pass_cli


@click.group("db")
def db_group() -> None:
    """Create and migrate the database schema."""


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@pass_cli
def db_upgrade(cli: CliContext, revision: str) -> None:
    """Create the schema or migrate it to the newest version."""
    database = cli.runtime.db
    migrate.upgrade(database, revision)
    click.echo(f"database at revision {migrate.current_revision(database)} ({database.engine.dialect.name})")


@db_group.command("current")
@pass_cli
def db_current(cli: CliContext) -> None:
    """Show the schema revision and whether it is the newest."""
    database = cli.runtime.db
    current = migrate.current_revision(database)
    head = migrate.head_revision()
    click.echo(f"current {current or '(empty database)'}, newest {head}")
    if current != head:
        raise click.ClickException("the schema is not current: run `stadspas-adapter db upgrade`")


@click.group("ledger")
def ledger_group() -> None:
    """Check the ledger."""


@ledger_group.command("verify")
@pass_cli
def ledger_verify(cli: CliContext) -> None:
    """Recompute every balance from its entries; exit 1 naming each mismatch."""
    with cli.runtime.db.read() as session:
        mismatches = ledger.verify(session)
    for mismatch in mismatches:
        click.echo(f"budget {mismatch.budget_id}: {mismatch.problem}", err=True)
    if mismatches:
        raise click.ClickException(f"{len(mismatches)} mismatch(es) between balances and ledger entries; "
                                   "do not settle until they are explained")
    click.echo("ledger verified: every balance equals the sum of its entries")
