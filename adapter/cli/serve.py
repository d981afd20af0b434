"""Run the API under gunicorn."""

from __future__ import annotations

import os

import click

from adapter.cli.base import CliContext, pass_cli, refuse_unless_schema_current


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=lambda: int(os.environ.get("PORT", "8080")), show_default="8080 or $PORT")
@click.option("--workers", type=int, default=2, show_default=True,
              help="Gunicorn worker processes; one per core is a good start.")
@pass_cli
def serve_command(cli: CliContext, host: str, port: int, workers: int) -> None:
    """Serve the API (never starts a scheduler: run `stadspas-adapter scheduler` once, separately)."""
    from adapter.api.server import serve

    settings = cli.settings  # validate the configuration before forking workers
    _ = cli.vault  # refuse to start without keys outside development
    refuse_unless_schema_current(cli)
    if cli.config_path:
        os.environ["ADAPTER_CONFIG"] = str(cli.config_path)
    click.echo(f"serving {settings.environment} API on http://{host}:{port} with {workers} worker(s)")
    serve(host, port, workers, production=not settings.is_development)
