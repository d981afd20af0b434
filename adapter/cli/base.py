"""What every command shares: the settings and runtime, built on first use."""

from __future__ import annotations

import getpass
from typing import TYPE_CHECKING

import click

from adapter.logs import configure_logging

if TYPE_CHECKING:  # imported on first use: `--help` and `demo-data` need no database or keys
    from adapter.crypto import Vault
    from adapter.runtime import Runtime
    from adapter.settings import Settings


class CliContext:
    def __init__(self, config_path: str | None):
        self.config_path = config_path
        self._runtime: Runtime | None = None

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            from adapter.runtime import Runtime
            from adapter.settings import ConfigError, load_settings

            try:
                self._runtime = Runtime(load_settings(self.config_path))
            except ConfigError as exc:
                raise click.ClickException(str(exc)) from None
            configure_logging(self._runtime.settings)
        return self._runtime

    @property
    def vault(self) -> Vault:
        """The keys for personal data; outside development mode, a clear refusal when they are missing."""
        from adapter.crypto import KeysMissing

        try:
            return self.runtime.vault
        except KeysMissing as exc:
            raise click.ClickException(str(exc)) from None

    def close(self) -> None:
        if self._runtime is not None:
            self._runtime.close()


pass_cli = click.make_pass_decorator(CliContext)


def refuse_unless_schema_current(cli: CliContext) -> None:
    """Stop a long-running process (the API, the scheduler) at its start when the database's schema is not this
    version's, with what to run, instead of starting it to fail every request and every night. A database that
    cannot be reached is not refused here: the process starts and reports it as it runs (readiness, each job)."""
    problem = schema_problem_if_readable(cli.runtime)
    if problem:
        raise click.ClickException(problem)


def schema_problem_if_readable(runtime: Runtime) -> str | None:
    """``migrate.schema_problem`` of the runtime's database; None too when the database cannot be read (what
    reading it said is the caller's to report). The migrations are imported here, when asked: loading them costs
    a command's start-up a noticeable part of a second."""
    from sqlalchemy.exc import SQLAlchemyError

    from adapter import migrate

    try:
        return migrate.schema_problem(runtime.db)
    except SQLAlchemyError:
        return None


def operator_actor() -> str:
    """Who runs this command, for the audit trail: the operating-system account."""
    try:
        return f"operator:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (some containers)
        return "operator:unknown"
