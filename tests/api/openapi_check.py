"""Check an HTTP answer against the OpenAPI document: status documented, media type, body schema,
problem code listed for that status, API-Version header. Used for the Flask test client and for
answers from a real gunicorn server alike."""

from __future__ import annotations

import json
import re
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker


class OpenApiChecker:
    def __init__(self, document: dict[str, Any]):
        self.document = document
        self.routes = [(re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$"), path)
                       for path in document["paths"]]
        self.checked = 0

    def check(self, method: str, url_path: str, status: int, headers: Any, body: bytes) -> None:
        assert headers.get("API-Version"), f"{method} {url_path}: no API-Version header"
        template = next((path for pattern, path in self.routes if pattern.match(url_path)), None)
        operation = self.document["paths"].get(template, {}).get(method.lower()) if template else None
        if operation is None and method.upper() == "OPTIONS" and template is not None:
            # HTTP's own answer on a documented address, as OpenAPI documents leave it out: the methods it takes.
            assert status == 200 and headers.get("Allow"), f"OPTIONS {url_path} answered {status} without Allow"
            return
        if operation is None:
            # Not a documented operation (unknown address or method): still a problem document.
            assert status in (404, 405), f"{method} {url_path} answered {status} but is not documented"
            self._validate_problem(body, headers, allowed_codes=None, where=f"{method} {url_path}")
            return
        where = f"{method} {template} -> {status}"
        response = operation["responses"].get(str(status))
        assert response is not None, f"{where}: status not documented"
        if method.upper() == "HEAD":
            return
        media_type = headers.get("Content-Type", "").split(";")[0].strip()
        assert media_type in response["content"], f"{where}: media type {media_type!r} not documented"
        if "x-problem-codes" in response:
            self._validate_problem(body, headers, response["x-problem-codes"], where)
        else:
            self._validate(response["content"][media_type]["schema"], json.loads(body), where)
        undocumented = {"Idempotent-Replayed", "Location", "Retry-After", "WWW-Authenticate"} & set(headers.keys()) \
            - set(response.get("headers", {}))
        assert not undocumented, f"{where}: headers {sorted(undocumented)} not documented"
        if status == 401:
            assert headers.get("WWW-Authenticate", "").startswith("Bearer"), f"{where}: no WWW-Authenticate"
        if status == 429:
            assert int(headers.get("Retry-After", "0")) >= 1, f"{where}: no Retry-After"
        self.checked += 1

    def _validate_problem(self, body: bytes, headers: Any, allowed_codes: list[str] | None, where: str) -> None:
        assert headers.get("Content-Type", "").startswith("application/problem+json"), f"{where}: not a problem"
        problem = json.loads(body)
        self._validate({"$ref": "#/components/schemas/ProblemDocument"}, problem, where)
        if allowed_codes is not None:
            assert problem["code"] in allowed_codes, f"{where}: code {problem['code']} not documented here"
        assert problem["type"].endswith("/" + problem["code"])

    def _validate(self, schema: dict[str, Any], instance: Any, where: str) -> None:
        root = {**schema, "components": self.document["components"]}
        errors = sorted(Draft202012Validator(root, format_checker=FormatChecker()).iter_errors(instance), key=str)
        assert not errors, f"{where}: answer does not match the OpenAPI document: " + "; ".join(
            f"{list(error.absolute_path)}: {error.message}" for error in errors)
