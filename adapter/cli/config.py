"""`stadspas-adapter config check`: every configuration problem in one run."""

from __future__ import annotations

import click

from adapter.cli.base import CliContext, pass_cli


@click.group("config")
def config_group() -> None:
    """Check the configuration."""


@config_group.command("check")
@pass_cli
def config_check(cli: CliContext) -> None:
    """Validate the file, every source's connector options and mapping, and the budget rules, without contacting
    any source."""
    from adapter.config_check import budget_rules_problems, source_problems

    settings = cli.settings  # the file's own problems stop here, all listed
    problems = source_problems(settings) + budget_rules_problems(settings)
    for problem in problems:
        click.echo(f"  - {problem}", err=True)
    if problems:
        raise click.ClickException(f"{len(problems)} problem(s) in the sources and budget rules; fix them and run "
                                   "this again")
    click.echo(f"configuration ok: {len(settings.sources)} source(s): {', '.join(sorted(settings.sources)) or '-'}")
