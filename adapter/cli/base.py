"""What every command shares: the settings and runtime, built on first use."""

from __future__ import annotations

import click

from adapter.runtime import Runtime
from adapter.settings import ConfigError, Settings, load_settings


class CliContext:
    def __init__(self, config_path: str | None):
        self.config_path = config_path
        self._runtime: Runtime | None = None

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            try:
                self._runtime = Runtime(load_settings(self.config_path))
            except ConfigError as exc:
                raise click.ClickException(str(exc)) from None
        return self._runtime

    def close(self) -> None:
        if self._runtime is not None:
            self._runtime.close()


pass_cli = click.make_pass_decorator(CliContext)
