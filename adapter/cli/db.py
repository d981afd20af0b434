"""Database and ledger maintenance commands."""

from __future__ import annotations

import click

from adapter import audit, ledger, migrate
from adapter.cli.base import CliContext, operator_actor, pass_cli


@click.group("db")
def db_group() -> None:
    """Create and migrate the database schema."""


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@pass_cli
def db_upgrade(cli: CliContext, revision: str) -> None:
    """Create the schema or migrate it to the newest version."""
    from alembic.util import CommandError

    database = cli.runtime.db
    try:
        # The keys are read only if a migration must re-encrypt stored personal data.
        migrate.upgrade(database, revision, vault=lambda: cli.runtime.vault)
    except (migrate.KeysNeeded, migrate.SchemaNewerThanCode) as exc:
        raise click.ClickException(str(exc)) from None
    except CommandError as exc:  # Alembic's own refusal of --revision (one it does not know), before any change
        raise click.ClickException(
            f"{exc}: this version's revisions are {', '.join(sorted(migrate.known_revisions()))}, or head (the "
            "newest, what `db upgrade` without --revision migrates to); nothing was changed") from None
    click.echo(f"database at revision {migrate.current_revision(database)} ({database.engine.dialect.name})")


@db_group.command("current")
@pass_cli
def db_current(cli: CliContext) -> None:
    """Show the schema revision and whether it is the newest."""
    database = cli.runtime.db
    current = migrate.current_revision(database)
    head = migrate.head_revision()
    click.echo(f"current {current or '(empty database)'}, newest {head}")
    if current is not None and current not in migrate.known_revisions():
        raise click.ClickException(str(migrate.SchemaNewerThanCode(current, head)))
    if current != head:
        raise click.ClickException("the schema is not current: run `stadspas-adapter db upgrade`")


@click.group("ledger")
def ledger_group() -> None:
    """Check the ledger."""


@ledger_group.command("verify")
@pass_cli
def ledger_verify(cli: CliContext) -> None:
    """Recompute every balance from its entries, and check each redemption and reversal against its entry;
    exit 1 naming each mismatch."""
    with cli.runtime.db.read() as session:
        mismatches = ledger.verify(session)
    for mismatch in mismatches:
        click.echo(f"budget {mismatch.budget_id}: {mismatch.problem}", err=True)
    if mismatches:
        raise click.ClickException(f"{len(mismatches)} mismatch(es) between balances, redemptions or reversals "
                                   "and their ledger entries; do not settle until they are explained")
    click.echo("ledger verified: every balance equals the sum of its entries, and every redemption and reversal "
               "the amount its entry booked")


@ledger_group.command("correct")
@click.argument("budget_id", type=int)
@click.argument("amount_cents", type=int)
@click.option("--reason", required=True, help="Why, for the audit trail and the municipality's books.")
@click.option("--again", is_flag=True, help="Book it even though the same correction of this budget was booked in "
              "the last 24 hours (refused otherwise, so that a command run twice books it once).")
@pass_cli
def ledger_correct(cli: CliContext, budget_id: int, amount_cents: int, reason: str, again: bool) -> None:
    """Add AMOUNT_CENTS (negative to take) to a budget as a correcting entry; audited.

    Entries are never edited: a mistake is undone by a new entry that says why.
    """
    actor = operator_actor()
    try:
        with cli.runtime.db.write() as session:
            entry = ledger.correct(session, budget_id, amount_cents, actor=actor, reason=reason, again=again)
            audit.record(session, actor, "ledger.corrected", f"budget:{budget_id}", amount_cents=amount_cents,
                         reason=reason, balance_after_cents=entry.balance_after_cents)
    except ledger.LedgerError as exc:
        raise click.ClickException(f"{exc}; nothing was changed") from None
    click.echo(f"budget {budget_id}: corrected by {amount_cents} cents, balance now {entry.balance_after_cents} cents")
