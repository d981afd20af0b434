"""Retention of personal data."""

from __future__ import annotations

import click

from adapter import retention
from adapter.cli.base import CliContext, operator_actor, pass_cli
from adapter.models import utcnow


@click.group("retention")
def retention_group() -> None:
    """Remove personal data of cardholders gone longer than the retention period."""


@retention_group.command("apply")
@click.option("--dry-run", is_flag=True, help="Count what would be removed; change nothing.")
@pass_cli
def retention_apply(cli: CliContext, dry_run: bool) -> None:
    """Pseudonymise cardholders inactive longer than retention.months; keep their budgets and ledger."""
    settings = cli.settings
    report = retention.apply(cli.runtime.db, settings, utcnow(), dry_run=dry_run, actor=operator_actor())
    verb = "would pseudonymise" if dry_run else "pseudonymised"
    removed = "would delete" if dry_run else "deleted"
    click.echo(f"{verb} {report.cardholders} cardholder(s), {report.passes} pass(es), "
               f"{report.households} household(s) deactivated before {report.cutoff.date().isoformat()} "
               f"(retention {settings.retention.months} months); {removed} {report.request_records} idempotency "
               "record(s) of requests from before then")
    if not report.scrubbed:
        click.echo("note: an open reader kept some of the removed values on disk until the database's next "
                   "check-point or vacuum; run this command again when the service is quiet to remove them now")
