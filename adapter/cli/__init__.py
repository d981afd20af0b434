"""The `stadspas-adapter` command. Each area's commands live in their own module."""

from __future__ import annotations

import importlib
import sys

import click

from adapter.cli.base import CliContext, pass_cli
from adapter.logs import configure_logging

# Command name -> "module:attribute". A command's module (and all it imports: SQLAlchemy models, Flask,
# connectors) loads only when that command runs, so `sync SOURCE` does not pay for `serve` or `report`.
COMMANDS = {
    "db": "adapter.cli.db:db_group",
    "keys": "adapter.cli.keys:keys_group",
    "ledger": "adapter.cli.db:ledger_group",
    "config": "adapter.cli.config:config_group",
    "connectors": "adapter.cli.connectors:connectors_group",
    "mappings": "adapter.cli.connectors:mappings_group",
    "sources": "adapter.cli.connectors:sources_group",
    "sync": "adapter.cli.sync:sync_group",
    "scheduler": "adapter.cli.sync:scheduler_command",
    "demo": "adapter.cli.demo:demo_group",
    "serve": "adapter.cli.serve:serve_command",
    "admins": "adapter.cli.admins:admins_group",
    "report": "adapter.cli.reports:report_group",
    "settlement": "adapter.cli.settlement:settlement_group",
    "merchants": "adapter.cli.merchants:merchants_group",
    "audit": "adapter.cli.audit:audit_group",
    "retention": "adapter.cli.retention:retention_group",
    "demo-data": "adapter.cli.demo_data:demo_data_command",
}


class _LazyCommands(dict):
    """The group's name -> command table, importing a command's module the first time it is looked up.
    A plain lookup (``"sync" in cli.commands``, ``cli.commands["sync"]``) keeps working for callers."""

    def _load(self, name: object) -> bool:
        if not dict.__contains__(self, name) and name in COMMANDS:
            module_name, attribute = COMMANDS[name].split(":")  # type: ignore[index]
            command = getattr(importlib.import_module(module_name), attribute)
            if command.name != name:
                raise RuntimeError(f"{COMMANDS[name]} is named {command.name!r}, not {name!r}")  # type: ignore[index]
            self[name] = command
        return dict.__contains__(self, name)

    def __contains__(self, name: object) -> bool:
        return self._load(name)

    def __missing__(self, name: str) -> click.Command:
        if self._load(name):
            return dict.__getitem__(self, name)
        raise KeyError(name)

    def get(self, name: str, default: click.Command | None = None) -> click.Command | None:  # type: ignore[override]
        return dict.__getitem__(self, name) if self._load(name) else default


class _AdapterGroup(click.Group):
    """Loads each command on first use (click's lazy-group pattern) and turns the errors an operator
    can fix into one sentence instead of a traceback."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.commands = _LazyCommands(self.commands)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def invoke(self, ctx: click.Context):  # type: ignore[no-untyped-def]
        try:
            return super().invoke(ctx)
        except Exception as exc:
            explained = explain_database_error(exc) or explain_key_error(exc)
            if explained:
                raise click.ClickException(explained) from None
            raise


def explain_database_error(error: Exception) -> str | None:
    """What an operator can do about a database error they can fix (no schema yet, no database to reach);
    None for any other error."""
    if _database_error(error) and _schema_missing(error):
        return "the database has no (current) schema: run `stadspas-adapter db upgrade` first"
    if _database_error(error) and _unreachable(error):
        return ("the database cannot be reached: check ADAPTER_DATABASE_URL (or database.url in the "
                "configuration) and that the database server runs and takes connections; nothing was changed")
    if _database_error(error) and _busy(error):
        return ("the database is busy: another process (a sync, a key rotation, a `db upgrade`) kept its SQLite "
                "file locked for longer than this command waits (60 s); run the command again once that process "
                "has finished (what this command had not committed yet was not changed)")
    return None


def explain_key_error(error: Exception) -> str | None:
    """What an operator can do about a stored value no configured key opens (a command that reads personal data,
    say a report, after the key it was written with left ADAPTER_ENCRYPTION_KEYS, or on a database restored from
    before a rotation); None for any other error."""
    fernet = sys.modules.get("cryptography.fernet")  # imported by whatever decrypted, like sqlalchemy.exc above
    if fernet is None or not isinstance(error, fernet.InvalidToken):
        return None
    from adapter.key_rotation import UNREADABLE_ADVICE

    return (f"stored values {UNREADABLE_ADVICE}. Once it is back, run `stadspas-adapter keys rotate`; "
            "`stadspas-adapter keys check` counts the rows no configured key reads")


def _database_error(error: Exception) -> bool:
    # Not imported up front: `demo-data` and `--help` need no SQLAlchemy. An error of it can only
    # have been raised once a command imported it.
    exc_module = sys.modules.get("sqlalchemy.exc")
    return exc_module is not None and isinstance(error, (exc_module.OperationalError, exc_module.ProgrammingError))


# What the drivers say when there is no database to talk to (psycopg: the server is down or the host unknown;
# SQLite: the file's folder does not exist or cannot be written).
_UNREACHABLE = ("connection refused", "could not connect", "connection failed", "could not translate host name",
                "name or service not known", "timeout expired", "unable to open database file",
                "server closed the connection")


def _unreachable(error: Exception) -> bool:
    text = str(getattr(error, "orig", error)).lower()
    return any(said in text for said in _UNREACHABLE)


def _busy(error: Exception) -> bool:
    # SQLite, after the busy timeout (adapter.db): a long first sync or `db upgrade` of a city holds the file's write
    # lock for longer than a minute, and a second `db upgrade` started beside it waits that long, then fails.
    return "database is locked" in str(getattr(error, "orig", error)).lower()


def _schema_missing(error: Exception) -> bool:
    text = str(getattr(error, "orig", error)).lower()
    # SQLite: "no such table"; PostgreSQL: UndefinedTable "relation ... does not exist". A column is missing when
    # a new version runs on the schema of an older one (`db upgrade` not run yet): SQLite's "no such column",
    # PostgreSQL's UndefinedColumn "column ... does not exist".
    return "no such table" in text or "no such column" in text or \
        (("relation" in text or "column" in text) and "does not exist" in text)


@click.group(cls=_AdapterGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", envvar="ADAPTER_CONFIG", type=click.Path(dir_okay=False),
              help="Configuration file (default config/adapter.yaml, or ADAPTER_CONFIG).")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """Child budgets on the city pass: sync, ledger, API and reports."""
    configure_logging()  # redacting from the first line; again with the configured level once settings load
    ctx.obj = CliContext(config_path)
    ctx.call_on_close(ctx.obj.close)


def main() -> None:
    cli(prog_name="stadspas-adapter")


__all__ = ["cli", "main", "pass_cli"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
