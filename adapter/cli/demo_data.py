"""`stadspas-adapter demo-data`: a made-up export of any size, for trying and sizing the sync."""

from __future__ import annotations

from pathlib import Path

import click

from adapter.demo_data import MAX_HOUSEHOLDS


@click.command("demo-data")
@click.option("--households", type=click.IntRange(min=1, max=MAX_HOUSEHOLDS), required=True,
              help=f"How many households to make (at most {MAX_HOUSEHOLDS:,}: about 4 passes each).")
@click.option("--format", "fmt", type=click.Choice(["csv", "soap", "rest"]), default="csv", show_default=True,
              help="csv: one file; soap and rest: a folder of answer pages.")
@click.option("--out", "out", type=click.Path(path_type=Path), required=True,
              help="The CSV file, or the folder for SOAP/REST pages.")
@click.option("--seed", type=int, default=1, show_default=True, help="The same seed gives the same export.")
@click.option("--next-night", is_flag=True, help="The following night's export: about 1% of rows changed.")
# Adults are born up to 58 years before it, and the sync rejects a birth date before 1900.
@click.option("--pass-year", type=click.IntRange(2000, 2100), default=None,
              help="Pass year (1 Aug - 31 Jul) named by its first year; default: the current one.")
@click.option("--page-size", type=click.IntRange(min=1, max=10_000), default=200, show_default=True,
              help="Households per SOAP/REST page.")
def demo_data_command(households: int, fmt: str, out: Path, seed: int, next_night: bool,
                      pass_year: int | None, page_size: int) -> None:
    """Write a made-up stadspas export in the format the demo mappings read (test BSNs only)."""
    from adapter.demo_data import OutputPathError, write

    try:
        written = write(fmt, out, households, seed=seed, pass_year=pass_year,  # type: ignore[arg-type]
                        next_night=next_night, page_size=page_size)
    except OutputPathError as exc:
        raise click.BadParameter(str(exc), param_hint="'--out'") from None
    except OSError as exc:  # no room on the disk, no right to write there
        raise click.ClickException(f"could not write the export to {out}: {exc.strerror or exc}; "
                                   "free space or choose another --out, and run the command again") from None
    click.echo(f"wrote {written.rows} pass rows of {written.households} households "
               f"in {written.files} file(s) to {out}")
