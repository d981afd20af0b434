"""`stadspas-adapter demo-data`: a made-up export of any size, for trying and sizing the sync."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("demo-data")
@click.option("--households", type=click.IntRange(min=1), required=True, help="How many households to make.")
@click.option("--format", "fmt", type=click.Choice(["csv", "soap", "rest"]), default="csv", show_default=True,
              help="csv: one file; soap and rest: a folder of answer pages.")
@click.option("--out", "out", type=click.Path(path_type=Path), required=True,
              help="The CSV file, or the folder for SOAP/REST pages.")
@click.option("--seed", type=int, default=1, show_default=True, help="The same seed gives the same export.")
@click.option("--next-night", is_flag=True, help="The following night's export: about 1% of rows changed.")
@click.option("--pass-year", type=int, default=None,
              help="Pass year (1 Aug - 31 Jul) named by its first year; default: the current one.")
@click.option("--page-size", type=click.IntRange(min=1, max=10_000), default=200, show_default=True,
              help="Households per SOAP/REST page.")
def demo_data_command(households: int, fmt: str, out: Path, seed: int, next_night: bool,
                      pass_year: int | None, page_size: int) -> None:
    """Write a made-up stadspas export in the format the demo mappings read (test BSNs only)."""
    from adapter.demo_data import write

    written = write(fmt, out, households, seed=seed, pass_year=pass_year, next_night=next_night,  # type: ignore[arg-type]
                    page_size=page_size)
    click.echo(f"wrote {written.rows} pass rows of {written.households} households "
               f"in {written.files} file(s) to {out}")
