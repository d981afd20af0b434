"""`stadspas-adapter settlement ...`: the monthly payment to the shops."""

from __future__ import annotations

from pathlib import Path

import click

from adapter import settlement
from adapter.cli.base import CliContext, operator_actor, pass_cli
from adapter.csvexport import euros_text
from adapter.periods import PeriodError


@click.group("settlement")
def settlement_group() -> None:
    """Monthly settlement: a CSV overview and a SEPA credit-transfer file per month."""


@settlement_group.command("create")
@click.option("--period", required=True, help="The month to settle, YYYY-MM (must be over).")
@click.option("--output", "output_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to write the files (default: <data_dir>/settlements).")
@click.option("--actor", default=None,
              help="Who makes the batch, for the audit trail (default: operator:<your user name>).")
@pass_cli
def settlement_create(cli: CliContext, period: str, output_dir: Path | None, actor: str | None) -> None:
    """Make the month's batch (or return the stored one) and write its files."""
    runtime = cli.runtime
    # A batch sends money: the audit trail names the operator, as the merchants commands do.
    actor = actor or operator_actor()
    try:
        result = settlement.create_batch(runtime.db, runtime.settings.settlement, period, actor)
    except PeriodError as exc:
        raise click.BadParameter(str(exc), param_hint="--period") from None
    except settlement.SettlementError as exc:
        raise click.ClickException(str(exc)) from None
    output_dir = output_dir or runtime.settings.data_dir / "settlements"
    verb = "created" if result.created else "already existed; files written again from the stored batch"
    click.echo(f"batch {result.batch.id} for {result.batch.period} {verb}")
    _print_lines(result)
    try:
        paths = settlement.write_files(result, output_dir)
    except OSError as exc:
        # The batch is stored by now: the operator must learn that it exists and that a rerun only writes its
        # files, not that the command crashed (which reads as "nothing was made, make it again elsewhere").
        raise click.ClickException(
            f"batch {result.batch.id} for {result.batch.period} is stored, but its files could not be written to "
            f"{output_dir} ({exc.strerror or exc}); run the same command again with --output set to a folder you "
            "can write to: it writes this stored batch's files and makes no second batch") from None
    for path in paths:
        click.echo(f"wrote {path}")
    if len(paths) == 1:
        click.echo("no SEPA file: no merchant is payable in this batch", err=True)


@settlement_group.command("list")
@pass_cli
def settlement_list(cli: CliContext) -> None:
    """Every batch, oldest first."""
    batches = settlement.list_batches(cli.runtime.db)
    if not batches:
        click.echo("no settlement batches yet; make one with `stadspas-adapter settlement create --period YYYY-MM`")
    for batch in batches:
        click.echo(f"{batch.id:>4}  {batch.period}  {euros_text(batch.total_payable_cents, symbol=True):>14}  "
                   f"{batch.message_id}  made {batch.created_at:%Y-%m-%d %H:%M} UTC by {batch.created_by}")


@settlement_group.command("show")
@click.argument("batch")
@pass_cli
def settlement_show(cli: CliContext, batch: str) -> None:
    """One batch by id or by period (YYYY-MM), with a line per merchant."""
    result = settlement.find_batch(cli.runtime.db, batch)
    if result is None:
        raise click.ClickException(f"no batch {batch!r}; `stadspas-adapter settlement list` shows them")
    click.echo(f"batch {result.batch.id} for {result.batch.period}, message {result.batch.message_id}, "
               f"execution date {result.batch.execution_date}")
    _print_lines(result)


@settlement_group.command("verify")
@pass_cli
def settlement_verify(cli: CliContext) -> None:
    """Check every stored batch against the redemptions and reversals it paid and against the audit trail."""
    from adapter import settlement_check

    with cli.runtime.db.read() as session:
        batches, problems = settlement_check.checked(session)
    for problem in problems:
        click.echo(f"  - {problem}", err=True)
    if problems:
        raise click.ClickException(
            f"{len(problems)} problem(s) in the stored settlement batches: their rows were changed after they were "
            "made, and the files made from them again would differ from what was paid. Restore those rows from a "
            "backup made after the batch, and run `stadspas-adapter audit verify` to see whether the audit trail "
            "was changed too")
    click.echo(f"{batches} batch(es) checked: every item is its redemption or reversal, every line adds up to its "
               "items, and every total is the one the audit trail recorded")


def _print_lines(result: settlement.BatchResult) -> None:
    for line in result.lines:
        click.echo(f"  merchant {line.merchant_id:>4} {line.merchant_name[:30]:<30} {line.iban or '-':<22} "
                   f"{euros_text(line.net_cents, symbol=True):>12}  {settlement.LINE_STATUS_TEXT[line.status]}")
    click.echo(f"  total payable {euros_text(result.batch.total_payable_cents, symbol=True)}")
    unpaid = sorted({line.merchant_id for line in result.lines
                     if line.status in (settlement.NO_IBAN, settlement.INVALID_IBAN)})
    if unpaid:
        click.echo(f"  merchant(s) {', '.join(map(str, unpaid))} could not be paid for want of a valid IBAN: give it"
                   " with `stadspas-adapter merchants set-iban ID IBAN`; next month's batch pays what is owed")
