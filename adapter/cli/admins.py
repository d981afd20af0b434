"""`stadspas-adapter admins ...`: accounts for the municipal dashboard."""

from __future__ import annotations

import click
from sqlalchemy import select

from adapter import admins
from adapter.cli.base import CliContext, operator_actor, pass_cli

# Who gives or takes a dashboard account: the operating-system account by default, as for the merchants commands
# and settlements, not one shared name for every operator.
_ACTOR_HELP = "Who does it, for the audit trail (default: operator:<your user name>)."


@click.group("admins")
def admins_group() -> None:
    """Accounts that may sign in to the dashboard (/admin)."""


@admins_group.command("add")
@click.argument("name")
@click.option("--actor", default=None, help=_ACTOR_HELP)
@pass_cli
def admins_add(cli: CliContext, name: str, actor: str | None) -> None:
    """Make an account; its password is printed once and stored only as a hash."""
    try:
        with cli.runtime.db.write() as session:
            issued = admins.add_admin(session, name, actor or operator_actor())
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"admin {issued.name} (id {issued.admin_id}) created")
    click.echo(f"password: {issued.password}")
    click.echo("This password is shown only now. Hand it over safely; it cannot be recovered.", err=True)


@admins_group.command("list")
@pass_cli
def admins_list(cli: CliContext) -> None:
    """Every account (never a password)."""
    with cli.runtime.db.read() as session:
        for account in session.execute(select(admins.AdminAccount).order_by(admins.AdminAccount.id)).scalars():
            state = "active" if account.active else "disabled"
            click.echo(f"{account.id:>4}  {account.name:<30} {state}  since {account.created_at:%Y-%m-%d}")


@admins_group.command("disable")
@click.argument("name")
@click.option("--actor", default=None, help=_ACTOR_HELP)
@pass_cli
def admins_disable(cli: CliContext, name: str, actor: str | None) -> None:
    """Switch an account off (someone left, or its password leaked): signed-in pages are refused at once."""
    try:
        with cli.runtime.db.write() as session:
            account = admins.disable_admin(session, name, actor or operator_actor())
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"admin {account.name} (id {account.id}) disabled; it can no longer sign in")
