"""Run the app under gunicorn from our own CLI, so one command starts production."""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger as GunicornLogger

from adapter.logs import prepare_handler, use_json


class RedactingGunicornLogger(GunicornLogger):
    """Gunicorn's own error and access logs, through our redaction filter and formatter."""

    production = False  # set by ``serve`` before gunicorn builds the logger

    def setup(self, cfg) -> None:  # type: ignore[no-untyped-def]
        super().setup(cfg)
        json_lines = use_json("auto", production=self.production)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                prepare_handler(handler, json_lines=json_lines)


class GunicornServer(BaseApplication):
    def __init__(self, app_factory_path: str, options: dict[str, Any]):
        self._app_factory_path = app_factory_path
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)
        # gunicorn 25.1+ opens a control socket in $HOME/.gunicorn unless told not to. The Docker image's user
        # may not write its home (an ERROR line at every start), and two servers of one user on a host take
        # each other's socket. We use no gunicornc: open none.
        if "control_socket_disable" in self.cfg.settings:
            self.cfg.set("control_socket_disable", True)

    def load(self):  # type: ignore[no-untyped-def]
        # Each worker builds its own app (and database pool) after the fork.
        from adapter.api import create_app

        return create_app()


def serve(host: str, port: int, workers: int, *, production: bool = False) -> None:
    RedactingGunicornLogger.production = production
    GunicornServer("adapter.api:create_app", {
        "bind": f"{host}:{port}", "workers": workers, "worker_class": "sync",
        "accesslog": None, "timeout": 30, "graceful_timeout": 10,
        "logger_class": "adapter.api.server.RedactingGunicornLogger",
    }).run()
