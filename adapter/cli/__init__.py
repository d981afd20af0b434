"""The `stadspas-adapter` command. Each area's commands live in their own module."""

from __future__ import annotations

import sys

import click
from sqlalchemy.exc import OperationalError, ProgrammingError

from adapter.cli.base import CliContext, pass_cli
from adapter.cli.admins import admins_group
from adapter.cli.audit import audit_group
from adapter.cli.config import config_group
from adapter.cli.connectors import connectors_group, mappings_group, sources_group
from adapter.cli.db import db_group, ledger_group
from adapter.cli.demo import demo_group
from adapter.cli.demo_data import demo_data_command
from adapter.cli.keys import keys_group
from adapter.cli.merchants import merchants_group
from adapter.cli.reports import report_group
from adapter.cli.retention import retention_group
from adapter.cli.serve import serve_command
from adapter.cli.settlement import settlement_group
from adapter.logs import configure_logging
from adapter.cli.sync import scheduler_command, sync_group


class _AdapterGroup(click.Group):
    """Turns the errors an operator can fix into one sentence instead of a traceback."""

    def invoke(self, ctx: click.Context):  # type: ignore[no-untyped-def]
        try:
            return super().invoke(ctx)
        except (OperationalError, ProgrammingError) as exc:
            if _schema_missing(exc):
                raise click.ClickException(
                    "the database has no (current) schema: run `stadspas-adapter db upgrade` first") from None
            raise


def _schema_missing(error: Exception) -> bool:
    text = str(getattr(error, "orig", error)).lower()
    # SQLite: "no such table"; PostgreSQL: UndefinedTable "relation ... does not exist".
    return "no such table" in text or ("relation" in text and "does not exist" in text)


@click.group(cls=_AdapterGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", envvar="ADAPTER_CONFIG", type=click.Path(dir_okay=False),
              help="Configuration file (default config/adapter.yaml, or ADAPTER_CONFIG).")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """Child budgets on the city pass: sync, ledger, API and reports."""
    configure_logging()  # redacting from the first line; again with the configured level once settings load
    ctx.obj = CliContext(config_path)
    ctx.call_on_close(ctx.obj.close)


COMMANDS = (
    db_group, keys_group, ledger_group, config_group, connectors_group, mappings_group, sources_group,
    sync_group, scheduler_command, demo_group, serve_command, admins_group, report_group, settlement_group,
    merchants_group, audit_group, retention_group, demo_data_command,
)
for command in COMMANDS:
    cli.add_command(command)


def main() -> None:
    cli(prog_name="stadspas-adapter")


__all__ = ["cli", "main", "pass_cli"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
