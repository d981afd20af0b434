"""Redemptions: take money at the counter, reverse it, and list both for the till's reconciliation."""

from __future__ import annotations

import re
from datetime import timedelta

from flask import Blueprint, Response, jsonify, request

from adapter import counter, ledger, reconciliation
from adapter.api import abuse, render
from adapter.api.auth import current_merchant, require_merchant
from adapter.api.context import runtime
from adapter.api.parsing import (
    fingerprint,
    idempotency_key_problems,
    invalid_request,
    parse_body,
    parse_query,
    require_no_query,
)
from adapter.api.problems import Problem
from adapter.api.schemas import RedemptionCreate, RedemptionQuery, ReversalCreate, ReversalQuery

blueprint = Blueprint("redemptions", __name__)
require_merchant(blueprint)

REPLAYED_HEADER = "Idempotent-Replayed"
# Redemption ids are UUIDs (adapter.models.new_public_id), in lower case once _issued_id had them. Anything else
# is no id of ours; PostgreSQL would even refuse one holding a NUL byte in the comparison (a 500).
ISSUED_ID = re.compile(r"[0-9a-f-]{1,36}")


@blueprint.post("/redemptions")
def create_redemption():  # type: ignore[no-untyped-def]
    require_no_query()
    body = parse_body(RedemptionCreate, extra_problems=idempotency_key_problems())
    merchant = current_merchant()
    settings = runtime().settings
    idempotency_key = request.headers["Idempotency-Key"]
    request_fingerprint = fingerprint(runtime().vault.hashes, "POST /v1/redemptions", body)
    try:
        # One write transaction: the look-up with the enumeration check, the key's record, the debit.
        outcome = counter.redeem(
            runtime().db, merchant, body.pass_number, body.amount_cents, category=body.category,
            budget_id=body.budget_id, allow_partial=body.allow_partial, reference=body.reference,
            idempotency_key=idempotency_key, fingerprint=request_fingerprint,
            expiry_grace_days=runtime().expiry_grace_days, in_progress_wait_ms=settings.api.idempotency_wait_ms,
            guard=abuse.unusable_passes_guard(merchant, idempotent=True))
    except Problem as refusal:
        # The unusable-pass limit is judged before the key's record is read: a till's retry of a payment whose
        # answer got lost would be refused for up to a minute, not knowing whether it paid.
        stored = ledger.stored_redemption(runtime().db, merchant.id, idempotency_key, request_fingerprint) \
            if refusal.code == "rate_limited" else None
        if stored is None:
            raise
        outcome = stored
    except counter.PassNotUsable:
        abuse.count_unusable_pass(merchant)
        raise render.pass_not_usable() from None
    except counter.CategoryNotAllowed:
        raise render.category_not_allowed() from None
    except counter.NoSuchBudget:
        raise render.budget_not_found() from None
    except ledger.IdempotencyInProgress:
        raise render.in_progress() from None
    return _answer(lambda: render.redemption(outcome), outcome.replayed,
                   location=f"/v1/redemptions/{outcome.redemption_id}")


@blueprint.post("/redemptions/<redemption_id>/reversals")
def create_reversal(redemption_id: str):  # type: ignore[no-untyped-def]
    require_no_query()
    issued = _issued_id(redemption_id)
    body = parse_body(ReversalCreate, extra_problems=idempotency_key_problems())
    if issued is None:
        raise render.redemption_not_found()
    redemption_id = issued
    merchant = current_merchant()
    settings = runtime().settings
    try:
        outcome = ledger.reverse(runtime().db, ledger.ReversalRequest(
            merchant_id=merchant.id, redemption_id=redemption_id, reason=body.reason, actor=f"merchant:{merchant.id}",
            amount_cents=body.amount_cents, window=timedelta(days=settings.api.reversal_window_days),
            idempotency_key=request.headers["Idempotency-Key"],
            fingerprint=fingerprint(runtime().vault.hashes, f"POST /v1/redemptions/{redemption_id}/reversals",
                                    body),
            today=counter.counter_today(), expiry_grace_days=runtime().expiry_grace_days),
            in_progress_wait_ms=settings.api.idempotency_wait_ms)
    except ledger.IdempotencyInProgress:
        raise render.in_progress() from None
    return _answer(lambda: render.reversal(outcome), outcome.replayed)


@blueprint.get("/redemptions")
def list_redemptions():  # type: ignore[no-untyped-def]
    return _listing(RedemptionQuery, reconciliation.redemption_page, render.redemption_item)


@blueprint.get("/reversals")
def list_reversals():  # type: ignore[no-untyped-def]
    return _listing(ReversalQuery, reconciliation.reversal_page, render.listed_reversal)


def _listing(query_model, page_of, item_of) -> Response:  # type: ignore[no-untyped-def]
    """A page of this shop's rows: ``page_of`` (a ``reconciliation`` listing) asked with the query's period and
    cursor, each row answered as ``item_of`` renders it."""
    query = parse_query(query_model)
    try:
        with runtime().db.read() as session:
            page = page_of(session, current_merchant().id, created_from=query.created_from,
                           created_before=query.created_before, cursor=query.cursor, limit=query.limit)
    except reconciliation.BadCursor:
        raise invalid_request([{"name": "cursor", "reason": "onbekende cursor; gebruik next_cursor uit het "
                                                            "vorige antwoord"}]) from None
    return jsonify({"items": [item_of(line) for line in page.lines], "next_cursor": page.next_cursor})


@blueprint.get("/redemptions/<redemption_id>")
def get_redemption(redemption_id: str):  # type: ignore[no-untyped-def]
    require_no_query()
    issued = _issued_id(redemption_id)
    line = None
    if issued is not None:
        with runtime().db.read() as session:
            line = reconciliation.find_redemption(session, current_merchant().id, issued)
    if line is None:
        raise render.redemption_not_found()
    return jsonify(render.redemption_item(line))


def _issued_id(text: str) -> str | None:
    """The id as issued (a lower-case UUID), or None for text that is no id of ours. Some tills print and key
    ids in upper case, which is the same id."""
    lowered = text.lower()
    return lowered if ISSUED_ID.fullmatch(lowered) else None


def _answer(render_body, replayed: bool, location: str | None = None) -> Response:  # type: ignore[no-untyped-def]
    """201 with the rendered outcome, or its problem; a replay says so in a header either way."""
    try:
        response = jsonify(render_body())
    except Problem as refusal:
        if replayed:
            refusal.headers[REPLAYED_HEADER] = "true"
        raise
    response.status_code = 201
    if location:
        response.headers["Location"] = location
    if replayed:
        response.headers[REPLAYED_HEADER] = "true"
    return response
