"""The HTTP shell: a Flask app factory. Handlers parse, call the core, answer.

Nothing in the rest of ``adapter`` imports this package.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from adapter.api import health, problems
from adapter.logs import configure_logging
from adapter.runtime import Runtime
from adapter.settings import Settings, load_settings

API_VERSION = "1.0.0"


def create_app(test_config: dict[str, Any] | None = None, *, settings: Settings | None = None) -> Flask:
    """Build the app. ``settings`` defaults to the config file (``ADAPTER_CONFIG``)."""
    app = Flask(__name__)
    app.config.update(test_config or {})
    settings = settings or app.config.get("ADAPTER_SETTINGS") or load_settings()
    configure_logging(settings)
    runtime = Runtime(settings)
    _ = runtime.vault  # outside development mode: refuse to start without keys (crypto.KeysMissing)
    app.extensions["adapter_runtime"] = runtime
    app.config["MAX_CONTENT_LENGTH"] = settings.api.max_body_bytes
    app.json.sort_keys = False

    problems.init_app(app)
    app.register_blueprint(health.blueprint, url_prefix="/v1")

    @app.after_request
    def _api_version(response):  # type: ignore[no-untyped-def]
        response.headers["API-Version"] = API_VERSION
        return response

    return app


def runtime_of(app: Flask) -> Runtime:
    return app.extensions["adapter_runtime"]
