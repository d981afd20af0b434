"""What every web page shares: signed session cookie, CSRF tokens, security headers, sign-in throttling."""

from __future__ import annotations

import hmac
import os
import secrets
from itertools import chain
from pathlib import Path

from flask import Flask, Request, Response, abort, current_app, render_template, request, session
from flask.sessions import SecureCookieSessionInterface
from sqlalchemy.orm import Session

from adapter import web_sessions
from adapter.limits import Limiter

SECRET_KEY_ENV = "ADAPTER_WEB_SECRET_KEY"
DEV_SECRET_FILE = "web-secret.key"
CSRF_FIELD = "csrf_token"
# The counter page and the dashboard share one cookie; each keeps its sign-in's row id (adapter.web_sessions) in it.
COUNTER_SIGN_IN, ADMIN_SIGN_IN = "counter_session", "admin_session"

# No script may run at all (we ship none), styles only from our own files, no framing.
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'none'; style-src 'self'; img-src 'self' data:; "
                           "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")


class WebSecretMissing(RuntimeError):
    pass


def session_secret(data_dir: Path, *, development: bool) -> str:
    """From the environment; in development, generated once into data_dir so every worker shares it."""
    from_env = os.environ.get(SECRET_KEY_ENV, "").strip()
    if from_env:
        return from_env
    if not development:
        raise WebSecretMissing(f"{SECRET_KEY_ENV} is not set; the counter page and dashboard are switched off "
                               "until it holds a long random value (e.g. `python -c 'import secrets; "
                               "print(secrets.token_urlsafe(48))'`)")
    path = data_dir / DEV_SECRET_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as handle:
            handle.write(secrets.token_urlsafe(48))
    except FileExistsError:
        pass
    return path.read_text().strip()


class SessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie, marked Secure whenever the page itself came over HTTPS."""

    def get_cookie_secure(self, app: Flask) -> bool:  # type: ignore[override]
        return bool(app.config.get("SESSION_COOKIE_SECURE")) or request.is_secure


def configure_sessions(app: Flask, secret_key: str) -> None:
    app.secret_key = secret_key
    app.session_interface = SessionInterface()
    # The cookie is not sent again on every request (only when the session changes, as a flashed message does):
    # what bounds a sign-in is its row (adapter.web_sessions), which the server checks on every request and
    # which lasts its lifetime from signing in, however busy the counter is.
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Strict",
                      SESSION_COOKIE_NAME="stadspas_session",
                      PERMANENT_SESSION_LIFETIME=int(web_sessions.LIFETIME.total_seconds()),
                      SESSION_REFRESH_EACH_REQUEST=False)


def csrf_token() -> str:
    token = session.get(CSRF_FIELD)
    if not token:
        token = secrets.token_urlsafe(32)
        session[CSRF_FIELD] = token
    return token


def check_csrf(req: Request) -> None:
    if req.method in ("GET", "HEAD", "OPTIONS"):
        return
    expected = session.get(CSRF_FIELD)
    sent = req.form.get(CSRF_FIELD, "")
    # As bytes: compare_digest raises TypeError on a str with non-ASCII letters, which a forged form may send.
    if not expected or not hmac.compare_digest(str(expected).encode(), sent.encode()):
        abort(Response(render_template("expired_form.html"), status=400))


def refuse_nul_bytes(req: Request) -> None:
    """A Dutch 400 page for a form or address holding a NUL byte, before anything is looked up.

    PostgreSQL refuses such text even in a comparison, so a form key, a reversal's reason or a receipt's address
    holding one was a 500 (after a payment form: 'look whether it was paid'). No form of ours sends one; the API
    refuses them in its schemas (adapter.api.schemas.PRINTABLE).
    """
    sent = [req.path, *chain.from_iterable(req.args.listvalues()), *chain.from_iterable(req.form.listvalues())]
    if any("\x00" in text for text in sent):
        abort(Response(render_template(
            "not_here.html", heading="Dit kan zo niet",
            what="Het formulier of adres bevat een teken dat hier niet kan. Ga terug, vernieuw de pagina en probeer "
                 "het opnieuw."), status=400))


def end_sign_ins(db_session: Session) -> None:
    """End on the server every sign-in this browser's cookie holds, as a sign-in (which replaces the cookie) and
    signing out (which clears it) drop them all: left open, a copy of the cookie would go on working."""
    for key in (COUNTER_SIGN_IN, ADMIN_SIGN_IN):
        web_sessions.end(db_session, session.get(key))


def start_session(**values: object) -> None:
    """A fresh session after sign-in (no fixation), with a new CSRF token."""
    session.clear()
    session.permanent = True
    session.update(values)
    csrf_token()


def add_security_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    # Pages show a child's name and balance, downloads the municipality's figures: nothing the web pages send is
    # kept in a shared browser's cache (static files keep their own caching).
    if request.blueprint != "web_static":
        response.headers["Cache-Control"] = "no-store"
    if request.is_secure:
        # Once a browser reached us over HTTPS, it never tries plain HTTP here again (a sign-in typed on a
        # hotel network cannot be downgraded). Only then: sent over HTTP it would be ignored, and a test
        # install without TLS would lock itself out of plain HTTP for a year.
        response.headers["Strict-Transport-Security"] = "max-age=31536000"
    return response


def client_ip() -> str:
    return request.remote_addr or "unknown"


def sign_in_blocked(bucket: str, limit: int, window_seconds: int = 60) -> bool:
    """Whether this client already failed ``limit`` times in the current window (looked at, not counted).

    Counted by the app's limiter, so Redis holds these counts too when it is configured.
    """
    return not _limiter().peek(bucket, limit, window_seconds).allowed


def count_failed_sign_in(bucket: str, limit: int, window_seconds: int = 60) -> None:
    _limiter().hit(bucket, limit, window_seconds)


def _limiter() -> Limiter:
    return current_app.extensions["adapter_limiter"]
