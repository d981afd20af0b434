"""`stadspas-adapter report ...`: the dashboard's figures on the command line."""

from __future__ import annotations

import json
import sys

import click

from adapter import reports
from adapter.cli.base import CliContext, pass_cli
from adapter.csvexport import BYTE_ORDER_MARK
from adapter.periods import PeriodError, parse_period


@click.group("report")
def report_group() -> None:
    """Uptake, spending and budget totals (the same figures as the dashboard)."""


def _report_command(kind: str, help_text: str) -> click.Command:
    @click.command(kind, help=help_text)
    @click.option("--period", required=True, help="YYYY, YYYY-MM or FROM..TO (months or days).")
    @click.option("--format", "output_format", type=click.Choice(["table", "csv", "json"]), default="table",
                  show_default=True)
    @pass_cli
    def command(cli: CliContext, period: str, output_format: str) -> None:
        try:
            parsed = parse_period(period)
        except PeriodError as exc:
            raise click.BadParameter(str(exc), param_hint="--period") from None
        runtime = cli.runtime
        with runtime.db.read() as session:
            tables = reports.report_tables(kind, session, runtime.vault, parsed)
        _emit(tables, output_format, parsed.label)

    return command


def _emit(tables: list[reports.Table], output_format: str, period_label: str) -> None:
    if output_format == "json":
        click.echo(json.dumps({"period": period_label,
                               "tables": {table.name: table.as_records() for table in tables}}, indent=2))
        return
    if output_format == "csv":
        _emit_csv(tables)
        return
    for index, table in enumerate(tables):
        if index:
            click.echo()
        click.echo(f"{table.title} ({period_label})")
        click.echo(_text_table(table))


def _emit_csv(tables: list[reports.Table]) -> None:
    """The tables one after another, each under a ``# name`` line when there are several. One byte-order mark, at
    the very start: Excel reads a file as UTF-8 only when it begins with one (else every é turns into Ã©), and a
    mark further on shows as "ï»¿" in that table's first header."""
    output = sys.stdout.buffer
    output.write(BYTE_ORDER_MARK)
    for table in tables:
        if len(tables) > 1:
            output.write(f"# {table.name}\r\n".encode("utf-8"))
        output.write(table.csv_bytes().removeprefix(BYTE_ORDER_MARK))
    output.flush()


def _text_table(table: reports.Table) -> str:
    header = [column.label for column in table.columns]
    body = table.formatted_rows()
    widths = [max(len(cell) for cell in column) for column in zip(header, *body)]
    numeric = [column.money or all(str(row[i]).lstrip("-").isdigit() for row in table.rows) and bool(table.rows)
               for i, column in enumerate(table.columns)]
    lines = []
    for row in [header, *body]:
        lines.append("  ".join(cell.rjust(width) if right else cell.ljust(width)
                               for cell, width, right in zip(row, widths, numeric)).rstrip())
    lines.insert(1, "  ".join("-" * width for width in widths))
    if not body:
        lines.append("(geen gegevens in deze periode)")
    return "\n".join(lines)


for _kind, _help in (("uptake", "Children with a budget vs children who spent, per month, rule and age band."),
                     ("spending", "Spending per category and per merchant per month (net of reversals)."),
                     ("budgets", "Granted, spent, expired, corrected and remaining per month; budgets per status.")):
    report_group.add_command(_report_command(_kind, _help))
