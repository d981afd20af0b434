"""`stadspas-adapter sync SOURCE`, `sync history`, `sync show RUN` and `scheduler`.

Exit codes of a sync, for cron wrappers and monitoring:
0 done (or dry run), 1 failed, 3 refused by the mass-change guard, 75 another run holds the source.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from typing import IO

import click

from adapter.cli.base import (CliContext, operator_actor, pass_cli, refuse_unless_schema_current,
                              schema_problem_if_readable)
from adapter.records import CardholderRecord, RejectedRecord
from adapter.rules import BudgetRules, RulesError, load_rules
from adapter.rules_trail import load_rules_recorded
from adapter.runtime import Runtime
from adapter.settings import config_path_from_env

EXIT_FAILED, EXIT_REFUSED, EXIT_BUSY = 1, 3, 75


class _SourceOrCommand(click.Group):
    """`sync SOURCE` runs a sync; `sync history` and `sync show` are subcommands (`sync run NAME` always works)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group("sync", cls=_SourceOrCommand)
def sync_group() -> None:
    """Sync a source now (`sync SOURCE [--dry-run] [--force]`), or look at the history."""


@sync_group.command("run")
@click.argument("source")
@click.option("--dry-run", is_flag=True, help="Show what would change (BSNs masked) and change nothing.")
@click.option("--force", is_flag=True,
              help="Apply a run the mass-change guard refused, after you checked the source. Audited.")
@pass_cli
def sync_run(cli: CliContext, source: str, dry_run: bool, force: bool) -> None:
    """Read SOURCE through its connector and mapping, update cardholders and passes, grant budgets."""
    settings = cli.settings
    if source not in settings.sources:
        known = ", ".join(sorted(settings.sources)) or "(none configured)"
        raise click.ClickException(f"unknown source '{source}'; configured sources: {known}")
    rules = _rules(cli.runtime, settings.budgets, dry_run=dry_run)
    # Imported here: the connectors layer is its own package area and the sync engine does not need it.
    from adapter.sources import read_source

    actor = operator_actor() if force else "operator"
    # Read in a worker process (adapter.read_ahead), which the sync starts once it holds the source's lock.
    with read_source(settings.sources[source], source_name=source,
                     base_dir=config_path_from_env(cli.config_path).resolve().parent,
                     stall_seconds=settings.sync.read_stall_minutes * 60) as records:
        code = execute_sync(cli.runtime, source, records, rules, dry_run=dry_run, force=force, actor=actor)
    sys.exit(code)


def execute_sync(runtime: Runtime, source: str, records: Iterable[CardholderRecord | RejectedRecord],
                 rules: BudgetRules, *, dry_run: bool = False, force: bool = False, actor: str = "operator",
                 on_stage=None) -> int:  # type: ignore[no-untyped-def]
    """Run one sync and tell the person at the terminal how it went; return the exit code."""
    from adapter.cli import explain_database_error
    from adapter.models import SyncStatus
    from adapter.sync import failure_reason, run_sync
    from adapter.sync_lock import SyncBusy

    progress = ProgressLine(sys.stderr) if sys.stderr.isatty() else None
    try:
        result = run_sync(runtime.db, runtime.vault, source, records, settings=runtime.settings.sync, rules=rules,
                          dry_run=dry_run, force=force, actor=actor,
                          progress=progress.update if progress else None, on_stage=on_stage)
    except SyncBusy as busy:
        click.echo(f"Error: {busy}", err=True)
        return EXIT_BUSY
    except Exception as exc:  # the run is recorded as failed; say so in one line
        explained = _schema_not_current(runtime, exc) or explain_database_error(exc)
        if explained:  # e.g. a dry run before `db upgrade`: say what to do, not "run it again"
            click.echo(f"Error: sync {source}: {explained}", err=True)
            return EXIT_FAILED
        # failure_reason: a database error's own text can quote a pass number or a whole row.
        click.echo(f"Error: sync {source} {failure_reason(exc)}. The previous data stays in force; "
                   f"see `stadspas-adapter sync history --source {source}`.", err=True)
        return EXIT_FAILED
    finally:
        if progress:
            progress.done()
    if dry_run:
        _print_dry_run(result)
    click.echo(result.summary())
    if result.status == SyncStatus.REFUSED:
        return EXIT_REFUSED
    return 0 if result.ok else EXIT_FAILED


@sync_group.command("history")
@click.option("--source", help="Only this source.")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@pass_cli
def sync_history_command(cli: CliContext, source: str | None, limit: int) -> None:
    """Recent runs with their counts and status, newest first."""
    from adapter import sync_history

    with cli.runtime.db.read() as session:
        runs = sync_history.recent_runs(session, source=source, limit=limit)
    if not runs:
        click.echo("no sync runs yet" + (f" for source '{source}'" if source else ""))
        return
    click.echo(f"{'run':>6}  {'source':<14} {'started (UTC)':<19} {'status':<9} {'secs':>6} {'read':>8} "
               f"{'new':>7} {'changed':>7} {'same':>8} {'rej':>6} {'miss':>6} {'deact':>6} {'budgets':>8}")
    for run in runs:
        seconds = f"{run.duration_seconds:.1f}" if run.duration_seconds is not None else "-"
        click.echo(f"{run.run_id:>6}  {run.source:<14} {run.started_at:%Y-%m-%d %H:%M:%S} {run.status:<9} "
                   f"{seconds:>6} {run.records_read:>8} {run.created:>7} {run.updated:>7} {run.unchanged:>8} "
                   f"{run.rejected:>6} {run.missing:>6} {run.deactivated:>6} {run.budgets_granted:>8}"
                   + (" forced" if run.forced else ""))
        if run.reason and run.status != "succeeded":
            click.echo(f"{'':>8}{run.reason}")


@sync_group.command("show")
@click.argument("run_id", metavar="RUN", type=int)
@click.option("--limit", type=click.IntRange(1, 100_000), default=1000, show_default=True)
@pass_cli
def sync_show(cli: CliContext, run_id: int, limit: int) -> None:
    """One run: its counts and every rejected record with the reason."""
    from adapter import sync_history

    with cli.runtime.db.read() as session:
        run = sync_history.get_run(session, run_id)
        if run is None:
            raise click.ClickException(f"there is no sync run {run_id}; `stadspas-adapter sync history` lists them")
        rejected = sync_history.run_outcomes(session, run_id, "rejected", limit=limit)
    click.echo(f"run {run.run_id} of source {run.source}: {run.status}, started {run.started_at:%Y-%m-%d %H:%M:%S}"
               f" UTC by {run.holder}")
    click.echo(f"read {run.records_read}, created {run.created}, updated {run.updated}, unchanged {run.unchanged}, "
               f"rejected {run.rejected}, missing {run.missing}, deactivated {run.deactivated}, "
               f"budgets granted {run.budgets_granted}" + (" (forced)" if run.forced else ""))
    if run.reason:
        click.echo(run.reason)
    if not rejected:
        click.echo("no rejected records")
        return
    click.echo(f"rejected records ({len(rejected)} shown of {run.rejected}):")
    for outcome in rejected:
        click.echo(f"  {outcome.record_key}: {outcome.reason}")


@click.command("scheduler")
@pass_cli
def scheduler_command(cli: CliContext) -> None:
    """Run the nightly syncs, the period roll-over and housekeeping (one process; never inside the API)."""
    from adapter.scheduler import ScheduleError, run_scheduler

    # Every sync needs the keys. Without this check a production scheduler started without them ran, and each
    # night's sync failed with a traceback and left no run in `sync history`: refuse now, as `serve` does.
    _ = cli.vault
    refuse_unless_schema_current(cli)
    _refuse_unless_configuration_reads(cli)
    try:
        run_scheduler(cli.runtime, config_path_from_env(cli.config_path).resolve().parent)
    except ScheduleError as exc:
        raise click.ClickException(str(exc)) from None


def _refuse_unless_configuration_reads(cli: CliContext) -> None:
    """Refuse to start while an enabled source's connector options or mapping, or the budget rules, do not read:
    started anyway, the scheduler ran for a day and failed each of those syncs at night, in a log line nobody
    reads at that hour. A disabled source is not the scheduler's: its problems wait for `config check`."""
    from adapter.config_check import budget_rules_problems, source_problems

    settings = cli.settings
    enabled = settings.model_copy(update={"sources": {name: source for name, source in settings.sources.items()
                                                      if source.enabled}})
    problems = source_problems(enabled) + budget_rules_problems(settings)
    if problems:
        listed = "".join(f"\n  - {problem}" for problem in problems)
        raise click.ClickException(f"the scheduler did not start: {len(problems)} problem(s) in the configuration"
                                   f"{listed}\nFix them (`stadspas-adapter config check` lists them again) and start "
                                   "the scheduler again.")


def _schema_not_current(runtime: Runtime, error: Exception) -> str | None:
    """Why a sync that the database refused cannot work here, when the schema is not this version's (the new
    version installed and `db upgrade` not run yet: a column the sync reads is not there); None otherwise. Asked
    only after a failure: reading the migrations costs a sync's start-up a noticeable part of a second."""
    from sqlalchemy.exc import DBAPIError

    return schema_problem_if_readable(runtime) if isinstance(error, DBAPIError) else None


def _rules(runtime: Runtime, path, *, dry_run: bool = False) -> BudgetRules:  # type: ignore[no-untyped-def]
    """The rules file, read and checked; a changed file is recorded in the audit trail, but not by a dry run,
    which changes nothing."""
    try:
        return load_rules(path) if dry_run else load_rules_recorded(runtime.db, path, actor="operator")
    except RulesError as exc:
        raise click.ClickException(str(exc)) from None


def _print_dry_run(result) -> None:  # type: ignore[no-untyped-def]
    click.echo("dry run: nothing was changed. A sample of what would happen:")
    for outcome in ("created", "updated"):
        for record_key, detail in result.samples.get(outcome, [])[:10]:
            click.echo(f"  {outcome:<8} {record_key}: {detail}")
    for record_key, reason in result.rejected_sample[:10]:
        click.echo(f"  rejected {record_key}: {reason}")
    if result.reason:
        click.echo(f"a real run would be refused: {result.reason}")


class ProgressLine:
    """Records read and records per second, redrawn in place on a terminal (stderr only)."""

    def __init__(self, stream: IO[str]):
        self._stream = stream
        self._started = time.perf_counter()
        self._last_drawn = 0.0

    def update(self, count: int) -> None:
        now = time.perf_counter()
        if now - self._last_drawn < 0.2:
            return
        self._last_drawn = now
        rate = count / max(now - self._started, 1e-9)
        self._stream.write(f"\rreading: {count:>9,} records  {rate:>9,.0f} records/s")
        self._stream.flush()

    def done(self) -> None:
        self._stream.write("\n")
        self._stream.flush()
