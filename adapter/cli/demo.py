"""Demo data for trying the service (`make run`)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from datetime import date

import click

from adapter.cli.base import CliContext, pass_cli


@click.group("demo")
def demo_group() -> None:
    """Made-up households and a demo merchant, test BSNs only."""


@demo_group.command("load")
@click.option("--base-url", default=lambda: f"http://127.0.0.1:{os.environ.get('PORT', '8080')}",
              show_default="http://127.0.0.1:$PORT")
@pass_cli
def demo_load(cli: CliContext, base_url: str) -> None:
    """Write the demo export, sync it through the `demo` source, and write var/demo.json (again: a quiet night)."""
    from adapter.demo import DEMO_FILE, DemoError, load_demo

    runtime = cli.runtime
    if not runtime.settings.is_development:
        raise click.ClickException("demo data is for development mode only; this configuration is production")
    try:
        info, result = load_demo(runtime, base_url, date.today())
    except DemoError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(result.summary(), err=True)
    click.echo(json.dumps(asdict(info), indent=2))
    click.echo(f"(also written to {runtime.settings.data_dir / DEMO_FILE})", err=True)
