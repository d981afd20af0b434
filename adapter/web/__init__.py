"""Web pages for people: the counter page for shops (/counter) and the municipality's dashboard (/admin).

Handlers call the same core functions as the JSON API and the CLI; no page calls
the API over HTTP. No page runs a script: everything works with plain forms.
"""

from __future__ import annotations

from flask import Flask, make_response, render_template, request
from werkzeug.exceptions import HTTPException

from adapter.csvexport import euros_text
from adapter.periods import LOCAL_ZONE
from adapter.web import admin, counter, error_pages, security

WEB_BLUEPRINTS = ("counter", "admin", "web_static")


def init_app(app: Flask) -> None:
    runtime = app.extensions["adapter_runtime"]
    try:
        secret = security.session_secret(runtime.settings.data_dir, development=runtime.settings.is_development)
    except security.WebSecretMissing as exc:
        app.logger.warning("%s", exc)
        return
    security.configure_sessions(app, secret)
    app.register_blueprint(counter.blueprint, url_prefix="/counter")
    app.register_blueprint(admin.blueprint, url_prefix="/admin")
    app.register_blueprint(counter.static_blueprint)
    app.jinja_env.globals["csrf_token"] = security.csrf_token
    app.jinja_env.filters["euros"] = lambda cents: euros_text(cents, symbol=True)
    app.jinja_env.filters["euros_grouped"] = lambda cents: euros_text(cents, symbol=True, grouped=True)
    app.jinja_env.filters["localtime"] = lambda instant: instant.astimezone(LOCAL_ZONE).strftime("%H:%M")

    @app.before_request
    def _refuse_forms_not_from_our_pages() -> None:
        if request.blueprint in WEB_BLUEPRINTS:
            security.refuse_nul_bytes(request)
            security.check_csrf(request)

    # A wrong address or method under the pages is answered as a page, in Dutch, not as the API's problem+json:
    # a cashier's browser shows it (adapter.api.problems asks this first).
    app.extensions["adapter_page_for_http_error"] = _page_for_http_error
    # ... and so is a database or Redis that does not answer, or a fault of ours (adapter.web.error_pages).
    app.extensions["adapter_page_for_error"] = error_pages.page_for_error

    @app.after_request
    def _headers(response):  # type: ignore[no-untyped-def]
        if request.blueprint in WEB_BLUEPRINTS:
            security.add_security_headers(response)
        return response


_NOT_HERE = {
    404: ("Deze pagina bestaat niet", "Op dit adres staat geen pagina; misschien is de link oud of verkeerd getypt."),
    405: ("Dit kan zo niet", "Deze pagina kan zo niet worden gebruikt; ga terug en gebruik de knoppen op de pagina."),
}


def _page_for_http_error(error: HTTPException):  # type: ignore[no-untyped-def]
    """A Dutch page for a 404 or 405 under the web pages; None elsewhere (the API answers those itself)."""
    if error.code not in _NOT_HERE or not request.path.startswith(error_pages.WEB_PREFIXES):
        return None
    heading, what = _NOT_HERE[error.code]
    response = make_response(render_template("not_here.html", heading=heading, what=what), error.code)
    security.add_security_headers(response)
    return response
