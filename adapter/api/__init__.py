"""The HTTP shell: a Flask app factory. Handlers parse, call the core, answer.

Nothing in the rest of ``adapter`` imports this package.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, request
from werkzeug.middleware.proxy_fix import ProxyFix

from adapter import web
from adapter.api import balance, health, openapi, problems, redemptions
from adapter.api.key_cache import KeyCache
from adapter.limits import Limiter, limiter_for
from adapter.logs import configure_logging
from adapter.runtime import Runtime
from adapter.settings import Settings, load_settings

# Semantic versioning of what the API answers; the paths keep /v1. 2.0.0: balance checks no longer tell a shop the
# child's age nor its budgets for other kinds of shop (a privacy fix: a till that read those fields must change),
# and GET /v1/reversals. The README's API section lists the changes for till vendors.
API_VERSION = "2.0.0"
_METHODS_WITH_BODY = {"POST", "PUT", "PATCH"}


def create_app(test_config: dict[str, Any] | None = None, *, settings: Settings | None = None,
               limiter: Limiter | None = None) -> Flask:
    """Build the app. ``settings`` defaults to the config file (``ADAPTER_CONFIG``); ``limiter`` to
    Redis when ``ADAPTER_REDIS_URL`` is set, else the database."""
    app = Flask(__name__, static_folder=None)
    app.config.update(test_config or {})
    settings = settings or app.config.get("ADAPTER_SETTINGS") or load_settings()
    configure_logging(settings)
    runtime = Runtime(settings)
    _ = runtime.vault  # outside development mode: refuse to start without keys (crypto.KeysMissing)
    app.extensions["adapter_runtime"] = runtime
    app.extensions["adapter_limiter"] = limiter or limiter_for(runtime.db)
    app.extensions["adapter_key_cache"] = KeyCache(settings.api.auth_cache_seconds)
    app.extensions["adapter_openapi"] = openapi.build_document(settings, API_VERSION)
    app.config["MAX_CONTENT_LENGTH"] = settings.api.max_body_bytes
    app.json.sort_keys = False
    if settings.api.trusted_proxies:
        # Behind a load balancer every request comes from its address: the failed sign-ins per client would
        # lock every shop out at once, and a page served over HTTPS at the balancer would get a cookie without
        # Secure. Only the configured number of hops is believed; a client cannot add its own.
        hops = settings.api.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]

    problems.init_app(app)
    app.before_request(_json_only)
    for blueprint in (health.blueprint, openapi.blueprint, balance.blueprint, redemptions.blueprint):
        app.register_blueprint(blueprint, url_prefix="/v1")
    web.init_app(app)  # the counter page and dashboard (adapter/web)

    @app.after_request
    def _api_version(response):  # type: ignore[no-untyped-def]
        response.headers["API-Version"] = API_VERSION
        return response

    return app


def _json_only() -> None:
    # The API under /v1 reads JSON only; the web pages (adapter/web) post HTML forms. An address or method the
    # API does not have (a routing exception, raised after this) is named as such: another content type would not
    # help the till.
    if request.path.startswith("/v1/") and request.method in _METHODS_WITH_BODY \
            and request.routing_exception is None and request.mimetype != "application/json":
        raise problems.problem("unsupported_media_type", "Deze API leest alleen JSON. Stuur de header "
                                                         "'Content-Type: application/json' met een JSON-body.")


def runtime_of(app: Flask) -> Runtime:
    return app.extensions["adapter_runtime"]
