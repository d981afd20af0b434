"""Run the app under gunicorn from our own CLI, so one command starts production."""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication


class GunicornServer(BaseApplication):
    def __init__(self, app_factory_path: str, options: dict[str, Any]):
        self._app_factory_path = app_factory_path
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self):  # type: ignore[no-untyped-def]
        # Each worker builds its own app (and database pool) after the fork.
        from adapter.api import create_app

        return create_app()


def serve(host: str, port: int, workers: int) -> None:
    GunicornServer("adapter.api:create_app", {
        "bind": f"{host}:{port}", "workers": workers, "worker_class": "sync",
        "accesslog": None, "timeout": 30, "graceful_timeout": 10,
    }).run()
