"""Reading and checking the audit trail."""

from __future__ import annotations

import click
from sqlalchemy import select

from adapter import audit
from adapter.cli.base import CliContext, pass_cli


@click.group("audit")
def audit_group() -> None:
    """The audit trail: who did what, when."""


@audit_group.command("verify")
@pass_cli
def audit_verify(cli: CliContext) -> None:
    """Check the hash chain; exit 1 naming every changed or missing row."""
    with cli.runtime.db.read() as session:
        problems = audit.verify(session)
        count = session.execute(select(audit.AuditEntry.id).order_by(audit.AuditEntry.id.desc()).limit(1)
                                ).scalar_one_or_none()
    for problem in problems:
        click.echo(f"audit entry {problem.entry_id}: {problem.problem}", err=True)
    if problems:
        raise click.ClickException(f"{len(problems)} problem(s) in the audit trail: it was edited outside the "
                                   "application. Keep a copy of the database and tell the security officer.")
    click.echo(f"audit trail verified: {count or 0} entr(ies), chain intact")


@audit_group.command("list")
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True,
              help="How many of the newest entries to show.")
@pass_cli
def audit_list(cli: CliContext, limit: int) -> None:
    """Show the newest entries, oldest first."""
    with cli.runtime.db.read() as session:
        entries = session.execute(select(audit.AuditEntry).order_by(audit.AuditEntry.id.desc()).limit(limit)
                                  ).scalars().all()
    for entry in reversed(entries):
        click.echo(f"{entry.id:>6}  {entry.occurred_at.isoformat(timespec='seconds')}  {entry.actor:<24} "
                   f"{entry.action:<24} {entry.object_ref}  {entry.details_json}")
