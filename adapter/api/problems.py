"""Errors as RFC 9457 problem details, each with a stable ``code`` a till can switch on.

``CODES`` is the closed list of codes this API answers with; the OpenAPI document
publishes it and a test produces every one. A shop's till shows ``detail`` to the
person at the counter, so it is Dutch and says what to do next.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, jsonify
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from werkzeug.exceptions import HTTPException

from adapter.limits import UNAVAILABLE_RETRY_AFTER_SECONDS, LimitsUnavailable

PROBLEM_TYPE_BASE = "https://stadspas-adapter.example/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"

# code -> (HTTP status, title)
CODES: dict[str, tuple[int, str]] = {
    "invalid_request": (400, "Ongeldig verzoek"),
    "unauthorized": (401, "Niet aangemeld"),
    "category_not_allowed": (403, "Categorie niet toegestaan"),
    "not_found": (404, "Niet gevonden"),
    "pass_not_usable": (404, "Pas niet bruikbaar"),
    "redemption_not_found": (404, "Afschrijving niet gevonden"),
    "method_not_allowed": (405, "Methode niet toegestaan"),
    "idempotency_request_in_progress": (409, "Verzoek nog bezig"),
    "body_too_large": (413, "Verzoek te groot"),
    "unsupported_media_type": (415, "Alleen JSON"),
    "insufficient_balance": (422, "Tegoed te laag"),
    "budget_not_found": (422, "Geen passend tegoed"),
    "idempotency_key_reused": (422, "Idempotency-Key al gebruikt"),
    "reversal_exceeds_redemption": (422, "Terugboeking te hoog"),
    "reversal_window_closed": (422, "Terugboeken niet meer mogelijk"),
    "rate_limited": (429, "Te veel verzoeken"),
    "internal_error": (500, "Interne fout"),
    "database_unavailable": (503, "Dienst niet beschikbaar"),
    "migrations_pending": (503, "Dienst niet beschikbaar"),
    "limits_unavailable": (503, "Dienst niet beschikbaar"),
    "keys_unusable": (503, "Dienst niet beschikbaar"),
}


class Problem(Exception):
    """Raise from a handler to answer with a problem document."""

    def __init__(self, status: int, code: str, title: str, detail: str, **extra: Any):
        super().__init__(detail)
        self.status, self.code, self.title, self.detail, self.extra = status, code, title, detail, extra
        self.headers: dict[str, str] = {}


def problem(code: str, detail: str, *, headers: dict[str, str] | None = None, **extra: Any) -> Problem:
    """A Problem for one of the documented ``CODES``, with its status and title."""
    status, title = CODES[code]
    error = Problem(status, code, title, detail, **extra)
    error.headers.update(headers or {})
    return error


def problem_response(status: int, code: str, title: str, detail: str, **extra: Any) -> Response:
    body = {"type": PROBLEM_TYPE_BASE + code, "title": title, "status": status, "detail": detail, "code": code}
    body.update(extra)
    response = jsonify(body)
    response.status_code = status
    response.mimetype = PROBLEM_MEDIA_TYPE
    return response


def init_app(app: Flask) -> None:
    @app.errorhandler(Problem)
    def _problem(error: Problem):  # type: ignore[no-untyped-def]
        response = problem_response(error.status, error.code, error.title, error.detail, **error.extra)
        response.headers.update(error.headers)
        return response

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException):  # type: ignore[no-untyped-def]
        page_for = app.extensions.get("adapter_page_for_http_error")  # the web pages' own (adapter.web)
        page = page_for(error) if page_for is not None else None
        if page is not None:
            return page
        code = _HTTP_CODES.get(error.code or 500)
        if code is None:
            return problem_response(error.code or 500, "http_error", error.name, error.name)
        extra = {}
        if code == "invalid_request":
            extra["invalid_params"] = [{"name": "body", "reason": "kan niet gelezen worden"}]
        status, title = CODES[code]
        response = problem_response(status, code, title, _HTTP_DETAILS[code], **extra)
        if code == "method_not_allowed" and error.valid_methods:  # type: ignore[attr-defined]
            response.headers["Allow"] = ", ".join(error.valid_methods)  # type: ignore[attr-defined]
        return response

    def _web_page(error: Exception):  # type: ignore[no-untyped-def]
        page_for = app.extensions.get("adapter_page_for_error")  # a Dutch page under the web pages (adapter.web)
        return page_for(error) if page_for is not None else None

    @app.errorhandler(LimitsUnavailable)
    def _limits_unavailable(error: LimitsUnavailable):  # type: ignore[no-untyped-def]
        page = _web_page(error)
        if page is not None:
            return page
        # Expected while Redis restarts: one line that says what to do, not a traceback per request. The limits are
        # judged before the key's record is read, so a till's retry of a paid redemption is refused here too.
        app.logger.warning("%s", error)
        response = problem_response(
            503, "limits_unavailable", CODES["limits_unavailable"][1],
            "De kassadienst is even niet beschikbaar; dit verzoek heeft niets afgeschreven, maar een eerdere poging "
            "met dezelfde Idempotency-Key kan wel gelukt zijn. Probeer het over een minuut opnieuw met dezelfde "
            "Idempotency-Key: dan krijgt u het antwoord van de eerste poging en wordt er nooit twee keer "
            "afgeschreven. Blijft het misgaan, neem dan contact op met de helpdesk van de gemeente.",
            retry_after_seconds=UNAVAILABLE_RETRY_AFTER_SECONDS)
        response.headers["Retry-After"] = str(UNAVAILABLE_RETRY_AFTER_SECONDS)
        return response

    @app.errorhandler(OperationalError)
    @app.errorhandler(InterfaceError)
    def _database_unavailable(error: DBAPIError):  # type: ignore[no-untyped-def]
        page = _web_page(error)
        if page is not None:
            return page
        # The database restarts or fails over, or the connection broke: the till should wait and retry, and the
        # operator needs one line, not a traceback per request (the text of a database error can quote values).
        app.logger.warning("database unavailable during a request (%s); it is retried on the till's next attempt",
                           type(error.orig).__name__ if error.orig is not None else type(error).__name__)
        response = problem_response(
            503, "database_unavailable", CODES["database_unavailable"][1],
            "De kassadienst kan de database even niet bereiken. Probeer het over een minuut opnieuw met dezelfde "
            "Idempotency-Key: een betaling wordt nooit twee keer afgeschreven. Blijft het misgaan, neem dan contact "
            "op met de helpdesk van de gemeente.", retry_after_seconds=UNAVAILABLE_RETRY_AFTER_SECONDS)
        response.headers["Retry-After"] = str(UNAVAILABLE_RETRY_AFTER_SECONDS)
        return response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):  # type: ignore[no-untyped-def]
        page = _web_page(error)
        if page is not None:
            return page
        # The exception text may hold personal data; it goes to the log, never to the client.
        app.logger.exception("unhandled error in request")
        # The failure may come after the payment's commit: the till must not take it for "unpaid" and start the
        # sale over under a new key (a second debit).
        return problem_response(500, "internal_error", CODES["internal_error"][1],
                                "Er ging bij ons iets mis. Probeer het over een minuut opnieuw met dezelfde "
                                "Idempotency-Key: een betaling wordt nooit twee keer afgeschreven. Blijft het "
                                "misgaan, neem dan contact op met de helpdesk van de gemeente.")


_HTTP_CODES = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed", 413: "body_too_large",
               415: "unsupported_media_type"}
_HTTP_DETAILS = {
    "invalid_request": "Het verzoek kan niet gelezen worden. Stuur een JSON-body zoals beschreven in /v1/openapi.json.",
    "not_found": "Op dit adres is niets. Zie /v1/openapi.json voor de adressen van deze API.",
    "method_not_allowed": "Dit adres kent deze methode niet. Zie /v1/openapi.json.",
    "body_too_large": "De body van het verzoek is te groot. Stuur alleen de velden uit /v1/openapi.json.",
    "unsupported_media_type": "Deze API leest alleen JSON. Stuur de header 'Content-Type: application/json'.",
}
