"""Errors as RFC 9457 problem details, each with a stable ``code`` a till can switch on."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

PROBLEM_TYPE_BASE = "https://stadspas-adapter.example/problems/"


class Problem(Exception):
    """Raise from a handler to answer with a problem document."""

    def __init__(self, status: int, code: str, title: str, detail: str, **extra: Any):
        super().__init__(detail)
        self.status, self.code, self.title, self.detail, self.extra = status, code, title, detail, extra
        self.headers: dict[str, str] = {}


def problem_response(status: int, code: str, title: str, detail: str, **extra: Any) -> Response:
    body = {"type": PROBLEM_TYPE_BASE + code, "title": title, "status": status, "detail": detail, "code": code}
    body.update(extra)
    response = jsonify(body)
    response.status_code = status
    response.mimetype = "application/problem+json"
    return response


def init_app(app: Flask) -> None:
    @app.errorhandler(Problem)
    def _problem(error: Problem):  # type: ignore[no-untyped-def]
        response = problem_response(error.status, error.code, error.title, error.detail, **error.extra)
        response.headers.update(error.headers)
        return response

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException):  # type: ignore[no-untyped-def]
        code = _HTTP_CODES.get(error.code or 500, "http_error")
        return problem_response(error.code or 500, code, error.name, _HTTP_DETAILS.get(code, error.name))

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):  # type: ignore[no-untyped-def]
        # The exception text may hold personal data; it goes to the log, never to the client.
        app.logger.exception("unhandled error in request")
        return problem_response(500, "internal_error", "Internal Server Error",
                                "Something went wrong on our side. Try again in a minute; "
                                "if it keeps happening, contact the municipality's helpdesk.")


_HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "body_too_large",
               415: "unsupported_media_type"}
_HTTP_DETAILS = {
    "bad_request": "The request could not be read. Send a JSON body as described in /v1/openapi.json.",
    "not_found": "There is nothing at this address. See /v1/openapi.json for the endpoints.",
    "method_not_allowed": "This address does not take this method. See /v1/openapi.json.",
    "body_too_large": "The request body is larger than allowed. Send only the documented fields.",
}
