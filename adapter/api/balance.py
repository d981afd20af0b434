"""POST /v1/balance-checks: what a shop may know about a pass at the counter."""

from __future__ import annotations

from flask import Blueprint, jsonify

from adapter import counter
from adapter.api import abuse, render
from adapter.api.auth import current_merchant, require_merchant
from adapter.api.context import runtime
from adapter.api.parsing import parse_body, require_no_query
from adapter.api.schemas import BalanceCheckRequest

blueprint = Blueprint("balance", __name__)
require_merchant(blueprint)


@blueprint.post("/balance-checks")
def check_balance():  # type: ignore[no-untyped-def]
    require_no_query()
    body = parse_body(BalanceCheckRequest)
    merchant = current_merchant()
    abuse.count_balance_check(merchant)
    adapter_runtime = runtime()
    try:
        # One statement (the limit check beside the look-up; an unusable pass reads once more, on its own):
        # no transaction around it.
        with adapter_runtime.db.read_once() as session:
            view = counter.check_balance(session, adapter_runtime.vault, merchant, body.pass_number,
                                         expiry_grace_days=adapter_runtime.expiry_grace_days,
                                         guard=abuse.unusable_passes_guard(merchant))
    except counter.PassNotUsable:
        abuse.count_unusable_pass(merchant)
        raise render.pass_not_usable() from None
    return jsonify(render.balance(view))
