"""GET /v1/openapi.json: the OpenAPI 3.1 document, in this one module.

Operations are listed here by hand (what a till integrator reads); the schemas of
bodies come from the pydantic models in ``adapter.api.schemas``, so a field cannot
be added to a model without appearing here. A test checks that every route of the
app is documented and every documented operation is routed, and the API tests
validate every answer against this document.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, current_app, jsonify
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from adapter.api import schemas
from adapter.api.parsing import IDEMPOTENCY_KEY_PATTERN
from adapter.api.problems import CODES, PROBLEM_MEDIA_TYPE
from adapter.settings import Settings

blueprint = Blueprint("openapi", __name__)

OPENAPI_VERSION = "3.1.0"
_REF = "#/components/schemas/{model}"


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    summary: str
    success: tuple[int, type[BaseModel] | None]
    problems: tuple[str, ...] = ()  # codes this operation can answer with
    body: type[BaseModel] | None = None
    authenticated: bool = True
    idempotent_key: bool = False
    query: type[BaseModel] | None = None
    path_parameters: tuple[str, ...] = ()
    success_headers: tuple[str, ...] = ()


_BODY_PROBLEMS = ("invalid_request", "body_too_large", "unsupported_media_type")

OPERATIONS: tuple[Operation, ...] = (
    Operation("get", "/v1/health", "getHealth", "The process answers (the database is not touched).",
              (200, schemas.HealthStatus), authenticated=False),
    Operation("get", "/v1/ready", "getReady",
              "The database answers, its schema is current and this server's keys open the stored data.",
              (200, schemas.ReadyStatus),
              ("database_unavailable", "migrations_pending", "limits_unavailable", "keys_unusable"),
              authenticated=False),
    Operation("get", "/v1/openapi.json", "getOpenApi", "This document.", (200, None), authenticated=False),
    Operation("post", "/v1/balance-checks", "checkBalance",
              "A pass's status, the holder's first name and age, and its budgets as this shop sees them.",
              (200, schemas.BalanceCheckResponse),
              ("unauthorized", *_BODY_PROBLEMS, "pass_not_usable", "rate_limited", "limits_unavailable"),
              body=schemas.BalanceCheckRequest),
    Operation("post", "/v1/redemptions", "createRedemption",
              "Take an amount from a budget. Idempotent: the same key and body answer as the first time.",
              (201, schemas.RedemptionCreated),
              ("unauthorized", *_BODY_PROBLEMS, "pass_not_usable", "category_not_allowed", "budget_not_found",
               "insufficient_balance", "idempotency_key_reused", "idempotency_request_in_progress", "rate_limited",
               "limits_unavailable"),
              body=schemas.RedemptionCreate, idempotent_key=True,
              success_headers=("Location", "Idempotent-Replayed")),
    Operation("get", "/v1/redemptions", "listRedemptions",
              "This shop's redemptions with their reversals, oldest first, a page at a time.",
              (200, schemas.RedemptionPage), ("unauthorized", "invalid_request"), query=schemas.RedemptionQuery),
    Operation("get", "/v1/reversals", "listReversals",
              "This shop's reversals by when they were made, oldest first, a page at a time, whenever their "
              "redemptions were made: with the redemptions of a day, what that day moved.",
              (200, schemas.ReversalPage), ("unauthorized", "invalid_request"), query=schemas.ReversalQuery),
    Operation("get", "/v1/redemptions/{redemption_id}", "getRedemption", "One of this shop's redemptions.",
              (200, schemas.RedemptionItem), ("unauthorized", "invalid_request", "redemption_not_found"),
              path_parameters=("redemption_id",)),
    Operation("post", "/v1/redemptions/{redemption_id}/reversals", "createReversal",
              "Give (part of) a redemption back to the budget it came from. Idempotent like redemptions.",
              (201, schemas.ReversalCreated),
              ("unauthorized", *_BODY_PROBLEMS, "redemption_not_found", "reversal_exceeds_redemption",
               "reversal_window_closed", "idempotency_key_reused", "idempotency_request_in_progress"),
              body=schemas.ReversalCreate, idempotent_key=True, path_parameters=("redemption_id",),
              success_headers=("Idempotent-Replayed",)),
)

# Refusals stored under the request's Idempotency-Key (adapter.ledger's outcomes): a retry with the same key
# replays them, with Idempotent-Replayed. The others (an unusable pass, a category) leave no trace under the key.
REPLAYABLE_PROBLEMS = frozenset({"insufficient_balance", "budget_not_found", "redemption_not_found",
                                 "reversal_exceeds_redemption", "reversal_window_closed"})

# Every operation can also answer these (unknown method, our own failure).
COMMON_PROBLEMS = ("method_not_allowed", "internal_error")

_HEADERS = {
    "API-Version": {"description": "The version of this API (semantic versioning).",
                    "schema": {"type": "string"}},
    "Location": {"description": "Where the new redemption can be read.", "schema": {"type": "string"}},
    "Idempotent-Replayed": {"description": "`true` when this is the stored answer to an earlier request with "
                                           "the same Idempotency-Key and body.",
                            "schema": {"type": "string", "enum": ["true"]}},
    "Retry-After": {"description": "Seconds to wait before trying again.", "schema": {"type": "string"}},
    "WWW-Authenticate": {"description": "The authentication scheme (Bearer).", "schema": {"type": "string"}},
}


def build_document(settings: Settings, api_version: str) -> dict[str, Any]:
    components = _component_schemas(settings)
    paths: dict[str, dict[str, Any]] = {}
    for operation in OPERATIONS:
        paths.setdefault(operation.path, {})[operation.method] = _operation(operation)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "stadspas-adapter counter API",
            "version": api_version,
            "description": (
                "For shops' till systems: check a child's balance on a city pass and redeem from it. "
                "Money is in integer euro cents; datetimes are UTC ISO 8601, dates YYYY-MM-DD. "
                "Pass numbers go in request bodies, never in a URL. Request bodies are JSON of at most "
                f"{settings.api.max_body_bytes} bytes. Every error is application/problem+json with a stable "
                "`code`; its `detail` is Dutch and says what to do next. "
                "Retrying a redemption or reversal: after a timeout or a lost connection, a 409, 429, 500 or 503, "
                "send the same body with the same Idempotency-Key (after `Retry-After` seconds when given); the "
                "first attempt may have been booked, and the retry then gets its answer with "
                "`Idempotent-Replayed: true`. Never start the same sale over under a new key before you have that "
                "answer: that would debit twice."),
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"merchantKey": {"type": "http", "scheme": "bearer",
                                                "description": "The shop's API key from the municipality."}},
            "headers": _HEADERS,
        },
        "x-problem-codes": {code: {"status": status, "title": title} for code, (status, title) in CODES.items()},
    }


def _component_schemas(settings: Settings) -> dict[str, Any]:
    request_models = [schemas.BalanceCheckRequest, schemas.RedemptionCreate, schemas.ReversalCreate]
    answer_models = [schemas.BalanceCheckResponse, schemas.RedemptionCreated, schemas.ReversalCreated,
                     schemas.RedemptionPage, schemas.RedemptionItem, schemas.ReversalPage, schemas.ProblemDocument,
                     schemas.HealthStatus, schemas.ReadyStatus]
    _, generated = models_json_schema(
        [(model, "validation") for model in request_models] + [(model, "serialization") for model in answer_models],
        ref_template=_REF)
    found = copy.deepcopy(generated["$defs"])
    for name in ("RedemptionCreate", "ReversalCreate"):
        amount = found[name]["properties"]["amount_cents"]
        target = amount if "anyOf" not in amount else next(part for part in amount["anyOf"]
                                                          if part.get("type") == "integer")
        target["maximum"] = settings.api.max_amount_cents
    found["RedemptionCreate"]["description"] = "Give exactly one of `category` and `budget_id`."
    # The model's "exactly one of" rule, in JSON Schema terms, so generated clients know it too.
    found["RedemptionCreate"]["oneOf"] = [
        {"required": ["category"], "properties": {"category": {"type": "string"}, "budget_id": {"type": "null"}}},
        {"required": ["budget_id"], "properties": {"budget_id": {"type": "integer"}, "category": {"type": "null"}}},
    ]
    found["ProblemDocument"]["properties"]["code"]["enum"] = sorted(CODES)
    return found


def _operation(operation: Operation) -> dict[str, Any]:
    status, model = operation.success
    success_schema = {"$ref": _REF.format(model=model.__name__)} if model else {"type": "object"}
    headers = {"API-Version": {"$ref": "#/components/headers/API-Version"}}
    headers.update({name: {"$ref": f"#/components/headers/{name}"} for name in operation.success_headers})
    responses: dict[str, Any] = {
        str(status): {"description": "Success.", "headers": headers,
                      "content": {"application/json": {"schema": success_schema}}}}
    by_status: dict[int, list[str]] = {}
    # An operation that needs a key reads the database for it: a database restart answers 503 there too.
    store_problems = ("database_unavailable",) if operation.authenticated else ()
    for code in (*operation.problems, *store_problems, *COMMON_PROBLEMS):
        by_status.setdefault(CODES[code][0], []).append(code)
    for problem_status, codes in sorted(by_status.items()):
        problem_headers = {"API-Version": {"$ref": "#/components/headers/API-Version"}}
        if problem_status == 401:
            problem_headers["WWW-Authenticate"] = {"$ref": "#/components/headers/WWW-Authenticate"}
        if problem_status in (409, 429, 503):
            problem_headers["Retry-After"] = {"$ref": "#/components/headers/Retry-After"}
        if operation.idempotent_key and REPLAYABLE_PROBLEMS.intersection(codes):
            problem_headers["Idempotent-Replayed"] = {"$ref": "#/components/headers/Idempotent-Replayed"}
        responses[str(problem_status)] = {
            "description": "Problem: " + ", ".join(f"`{code}`" for code in codes) + ".",
            "headers": problem_headers,
            "x-problem-codes": codes,
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": _REF.format(model="ProblemDocument")}}},
        }
    document: dict[str, Any] = {"operationId": operation.operation_id, "summary": operation.summary,
                                "responses": responses, "parameters": _parameters(operation)}
    document["security"] = [{"merchantKey": []}] if operation.authenticated else []
    if operation.body is not None:
        document["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": {"$ref": _REF.format(model=operation.body.__name__)}}}}
    return document


def _parameters(operation: Operation) -> list[dict[str, Any]]:
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "maxLength": 36}}
        for name in operation.path_parameters]
    if operation.idempotent_key:
        parameters.append({
            "name": "Idempotency-Key", "in": "header", "required": True,
            # "Per purchase" alone, on the reversal too, read as "the purchase's key": every reversal then got
            # idempotency_key_reused.
            "description": "A unique key per purchase and per reversal (e.g. a UUID); a reversal takes a key of its "
                           "own, not the one of the redemption it reverses. Keys are per shop. Send the same key "
                           "with the same body again to retry safely.",
            "schema": {"type": "string", "minLength": 1, "maxLength": 128,
                       "pattern": IDEMPOTENCY_KEY_PATTERN.pattern}})
    if operation.query is not None:
        query_schema = operation.query.model_json_schema(by_alias=True)
        for name, schema in query_schema["properties"].items():
            parameters.append({"name": name, "in": "query", "required": name in query_schema.get("required", []),
                               "schema": schema})
    return parameters


@blueprint.get("/openapi.json")
def openapi_document():  # type: ignore[no-untyped-def]
    return jsonify(current_app.extensions["adapter_openapi"])
