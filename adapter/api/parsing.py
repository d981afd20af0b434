"""Reading a request: JSON body against its model, headers and query, every problem at once."""

from __future__ import annotations

import re
from typing import Any, TypeVar

from flask import current_app, request
from pydantic import BaseModel, ValidationError

from adapter.api.problems import problem
from adapter.crypto import KeyedHashes, request_fingerprint

Model = TypeVar("Model", bound=BaseModel)

IDEMPOTENCY_KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,128}$")  # visible ASCII, 1-128 characters


def parse_body(model: type[Model], *, extra_problems: list[dict[str, str]] | None = None) -> Model:
    """The body as ``model``; a 400 listing every invalid parameter otherwise (``extra_problems`` too)."""
    invalid = list(extra_problems or [])
    parsed: Model | None = None
    try:
        parsed = model.model_validate_json(request.get_data(cache=True) or b"",
                                           context={"max_amount_cents": _settings().api.max_amount_cents})
    except ValidationError as exc:
        invalid.extend(_describe(error) for error in exc.errors(include_url=False))
    if invalid or parsed is None:
        raise invalid_request(invalid)
    return parsed


def parse_query(model: type[Model]) -> Model:
    """The query string as ``model`` (read leniently: query values are always text)."""
    try:
        return model.model_validate(request.args.to_dict())
    except ValidationError as exc:
        raise invalid_request([_describe(error) for error in exc.errors(include_url=False)]) from None


def require_no_query() -> None:
    # A pass number in a URL ends up in proxy logs: POST endpoints take nothing there.
    if request.args:
        raise invalid_request([{"name": name, "reason": "hoort niet in de URL; stuur het in de JSON-body"}
                               for name in sorted(request.args)])


def idempotency_key_problems() -> list[dict[str, str]]:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return [{"name": "Idempotency-Key", "reason": "header ontbreekt; stuur per afrekening een unieke sleutel "
                                                      "(bijv. een UUID) en dezelfde bij een nieuwe poging"}]
    if not IDEMPOTENCY_KEY_PATTERN.match(key):
        return [{"name": "Idempotency-Key", "reason": "1 tot 128 zichtbare ASCII-tekens"}]
    return []


def fingerprint(hashes: KeyedHashes, endpoint: str, body: BaseModel) -> str:
    """What makes two requests the same: the endpoint and the canonical JSON of the validated body.

    Defaults are filled in, so sending ``"allow_partial": false`` or leaving it out is the same request
    (a till that adds an explicit default on its retry must get the first answer, not a refusal).

    Keyed (``request_fingerprint``): the body holds the full pass number, and the fingerprint is stored with the
    key's record. A plain hash of it could be reversed by trying the pass numbers of an issuer's range, also after
    retention replaced the pass number itself.
    """
    return request_fingerprint(hashes, endpoint, body.model_dump(mode="json"))


def invalid_request(invalid_params: list[dict[str, str]]) -> Exception:
    names = ", ".join(dict.fromkeys(param["name"] for param in invalid_params))
    # Said of a refused reversal too, where "nothing was debited" leaves open whether the refund was made.
    return problem("invalid_request", f"Het verzoek klopt niet ({names}). Verbeter de genoemde velden en "
                                      "probeer het opnieuw; er is niets afgeschreven of teruggeboekt.",
                   invalid_params=invalid_params)


def _describe(error: Any) -> dict[str, str]:
    name = ".".join(str(part) for part in error["loc"]) or _BODY_LEVEL_NAME.get(error["type"], "body")
    return {"name": name, "reason": _reason(error)}


_BODY_LEVEL_NAME = {"value_error": "category"}


def _reason(error: Any) -> str:
    kind, context = error["type"], error.get("ctx") or {}
    if kind == "value_error":
        return str(context.get("error", error["msg"]))
    if kind == "string_pattern_mismatch" and error["loc"] and error["loc"][-1] in _PATTERN_REASONS:
        return _PATTERN_REASONS[error["loc"][-1]]
    if kind in ("int_type", "int_parsing") and error["loc"] and error["loc"][-1] in _WHOLE_NUMBER_REASONS:
        return _WHOLE_NUMBER_REASONS[error["loc"][-1]]
    template = _REASONS.get(kind)
    if template is None:  # pydantic's own words are English: never those to a shop
        return "heeft niet de juiste vorm; zie /v1/openapi.json"
    return template.format(**{key: value for key, value in context.items()})


# What a value of the wrong form should look like, per field, instead of the pattern it failed.
_PATTERN_REASONS = {
    "pass_number": "alleen cijfers: het nummer op de pas, zonder letters of streepjes",
    "category": "kleine letters, cijfers, - of _ (zoals in de saldocheck)",
    "reference": "mag geen stuurtekens bevatten (zoals een nul-byte, tab of regeleinde); laat ze weg",
    "reason": "mag niet leeg zijn en geen stuurtekens bevatten (zoals een nul-byte, tab of regeleinde); schrijf kort "
              "waarom u terugboekt",
}


# What a value that is not a whole number should have been, per field. A till that sends euros (12.5 or "12.50")
# must learn the unit: told only "a whole number", it may round to 12 or 13 cents for a purchase of € 12,50.
_WHOLE_NUMBER_REASONS = {
    "amount_cents": "moet een geheel aantal eurocenten zijn, als getal zonder aanhalingstekens: 1250 voor € 12,50",
}


_REASONS = {
    "missing": "verplicht veld ontbreekt",
    "extra_forbidden": "onbekend veld; zie /v1/openapi.json",
    "json_invalid": "geen geldige JSON",
    "json_type": "de body moet een JSON-object zijn",
    "model_type": "de body moet een JSON-object zijn",
    "model_attributes_type": "de body moet een JSON-object zijn",
    "string_type": "moet een tekst (string) zijn",
    "int_type": "moet een geheel getal zijn",
    "bool_type": "moet true of false zijn",
    "string_too_short": "minimaal {min_length} teken(s)",
    "string_too_long": "maximaal {max_length} tekens",
    "string_pattern_mismatch": "heeft niet de juiste vorm ({pattern})",
    "greater_than_equal": "minimaal {ge}",
    "less_than_equal": "maximaal {le}",
    "int_parsing": "moet een geheel getal zijn",
    "datetime_parsing": "moet een tijdstip zijn zoals 2026-03-01T00:00:00Z",
    "datetime_from_date_parsing": "moet een tijdstip zijn zoals 2026-03-01T00:00:00Z",
    "datetime_type": "moet een tijdstip zijn zoals 2026-03-01T00:00:00Z",
    "timezone_aware": "geef de tijdzone mee, zoals 2026-03-01T00:00:00Z of +01:00",
}


def _settings():  # type: ignore[no-untyped-def]
    return current_app.extensions["adapter_runtime"].settings
