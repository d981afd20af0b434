"""The OpenAPI document matches the routes exactly, and every documented error code is produced."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import update

from adapter import counter, ledger
from adapter.api import create_app
from adapter.api.problems import CODES
from adapter.models import Redemption, utcnow
from tests.api.conftest import build_api
from tests.conftest import make_settings


def _routes(app) -> set[tuple[str, str]]:  # type: ignore[no-untyped-def]
    found = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/v1/"):
            continue  # the web pages (adapter/web) are HTML, not part of the API
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        found |= {(method.lower(), path) for method in rule.methods - {"HEAD", "OPTIONS"}}
    return found


def test_every_route_is_documented_and_every_documented_operation_routed(api):
    document = api.client.get("/v1/openapi.json").get_json()
    documented = {(method, path) for path, operations in document["paths"].items() for method in operations}
    assert documented == _routes(api.app)
    assert document["openapi"] == "3.1.0"
    assert set(document["x-problem-codes"]) == set(CODES)
    assert document["components"]["schemas"]["RedemptionCreate"]["properties"]["amount_cents"]["maximum"] == 100_000
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                for code in response.get("x-problem-codes", []):
                    assert CODES[code][0] == int(status), f"{method} {path}: {code} under {status}"


def test_the_document_says_a_reversal_takes_an_idempotency_key_of_its_own(api):
    """Told "a unique key per purchase" on the reversal too, an integrator sends the purchase's key with its
    reversal, which is refused as a reused key every time."""
    document = api.client.get("/v1/openapi.json").get_json()
    operation = document["paths"]["/v1/redemptions/{redemption_id}/reversals"]["post"]
    [key] = [parameter for parameter in operation["parameters"] if parameter["name"] == "Idempotency-Key"]
    assert "per reversal" in key["description"] and "not the one of the redemption" in key["description"]
    # And when to retry under the same key: an integrator with only this document must learn it here.
    assert "same Idempotency-Key" in document["info"]["description"]

    child, shop = api.child(), api.shop()
    made = api.redeem(shop, {"pass_number": child.pass_number, "amount_cents": 100, "category": "school"},
                      key="bon-7")
    reused = api.reverse(shop, made.get_json()["redemption_id"], {"reason": "retour"}, key="bon-7")
    assert reused.status_code == 422 and reused.get_json()["code"] == "idempotency_key_reused"


def test_the_document_needs_no_key(api):
    assert api.client.get("/v1/openapi.json").status_code == 200


def _auth(key):  # type: ignore[no-untyped-def]
    return {"Authorization": f"Bearer {key}"}


def _redeemed(api, key, child, amount_cents=1_000):  # type: ignore[no-untyped-def]
    return api.redeem(key, {"pass_number": child.pass_number, "amount_cents": amount_cents,
                            "budget_id": child.budget_id}).get_json()["redemption_id"]


# One way to produce each documented code through the API; the test below requires one per code.
def _invalid_request(api, monkeypatch):  # type: ignore[no-untyped-def]
    return api.check(api.shop(), "letters")


def _unauthorized(api, monkeypatch):  # type: ignore[no-untyped-def]
    return api.check("spk_nope", "6400000000000011")


def _category_not_allowed(api, monkeypatch):  # type: ignore[no-untyped-def]
    child = api.child(category="school")
    return api.redeem(api.shop("Sport", ("sport",)), {"pass_number": child.pass_number, "amount_cents": 1,
                                                      "category": "school"})


def _not_found(api, monkeypatch):  # type: ignore[no-untyped-def]
    return api.client.get("/v1/nowhere")


def _pass_not_usable(api, monkeypatch):  # type: ignore[no-untyped-def]
    return api.check(api.shop(), "6499999999999999")


def _redemption_not_found(api, monkeypatch):  # type: ignore[no-untyped-def]
    return api.client.get("/v1/redemptions/nope", headers=_auth(api.shop()))


def _method_not_allowed(api, monkeypatch):  # type: ignore[no-untyped-def]
    return api.client.delete("/v1/balance-checks", headers=_auth(api.shop()))


def _idempotency_request_in_progress(api, monkeypatch):  # type: ignore[no-untyped-def]
    # The real race on PostgreSQL is in test_gunicorn_postgres.py; this checks the mapping on every run.
    def still_running(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise ledger.IdempotencyInProgress("twin running")
    monkeypatch.setattr(counter, "redeem", still_running)
    return api.redeem(api.shop(), {"pass_number": "6400000000000011", "amount_cents": 1, "category": "school"})


def _body_too_large(api, monkeypatch):  # type: ignore[no-untyped-def]
    return api.client.post("/v1/balance-checks", data="{" + " " * 20_000 + "}", content_type="application/json",
                           headers=_auth(api.shop()))


def _unsupported_media_type(api, monkeypatch):  # type: ignore[no-untyped-def]
    return api.client.post("/v1/balance-checks", data="pass_number=1", content_type="text/plain",
                           headers=_auth(api.shop()))


def _insufficient_balance(api, monkeypatch):  # type: ignore[no-untyped-def]
    child = api.child(amount_cents=100)
    return api.redeem(api.shop(), {"pass_number": child.pass_number, "amount_cents": 101, "category": "school"})


def _budget_not_found(api, monkeypatch):  # type: ignore[no-untyped-def]
    child = api.child()
    return api.redeem(api.shop(), {"pass_number": child.pass_number, "amount_cents": 1, "budget_id": 999_999})


def _idempotency_key_reused(api, monkeypatch):  # type: ignore[no-untyped-def]
    child, key = api.child(), api.shop()
    api.redeem(key, {"pass_number": child.pass_number, "amount_cents": 1, "category": "school"}, key="same")
    return api.redeem(key, {"pass_number": child.pass_number, "amount_cents": 2, "category": "school"}, key="same")


def _reversal_exceeds_redemption(api, monkeypatch):  # type: ignore[no-untyped-def]
    child, key = api.child(), api.shop()
    return api.reverse(key, _redeemed(api, key, child), {"amount_cents": 1_001, "reason": "te veel"})


def _reversal_window_closed(api, monkeypatch):  # type: ignore[no-untyped-def]
    child, key = api.child(), api.shop()
    redemption_id = _redeemed(api, key, child)
    with api.db.write() as session:
        session.execute(update(Redemption).where(Redemption.id == redemption_id)
                        .values(created_at=utcnow() - timedelta(days=90)))
    return api.reverse(key, redemption_id, {"reason": "te laat"})


def _rate_limited(api, monkeypatch):  # type: ignore[no-untyped-def]
    key = api.shop()
    for _ in range(10):
        api.check(key, "6499999999999999")
    return api.check(key, "6499999999999999")


def _internal_error(api, monkeypatch):  # type: ignore[no-untyped-def]
    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("pass 6400000000000011 of 999993653 broke")  # must not reach the client
    monkeypatch.setattr(counter, "check_balance", broken)
    response = api.check(api.shop(), "6400000000000011")
    assert "999993653" not in response.get_data(as_text=True)
    assert "6400000000000011" not in response.get_data(as_text=True)
    return response


def _database_unavailable(api, monkeypatch):  # type: ignore[no-untyped-def]
    broken = build_api(api.app.extensions["adapter_runtime"].settings.data_dir,
                       "postgresql+psycopg://nobody@127.0.0.1:1/none", api.vault)
    return broken.client.get("/v1/ready")


def _migrations_pending(api, monkeypatch):  # type: ignore[no-untyped-def]
    data_dir = api.app.extensions["adapter_runtime"].settings.data_dir
    empty = build_api(data_dir, f"sqlite:///{data_dir / 'empty.db'}", api.vault)
    return empty.client.get("/v1/ready")


def _keys_unusable(api, monkeypatch):  # type: ignore[no-untyped-def]
    from adapter.crypto import Vault, generate_blind_index_key, generate_encryption_key
    from tests import factories

    factories.child_with_budget(api.db, Vault([generate_encryption_key()], generate_blind_index_key()))
    return api.client.get("/v1/ready")


def _limits_unavailable(api, monkeypatch):  # type: ignore[no-untyped-def]
    from adapter.limits import RedisLimiter
    from tests.api.live_server import free_port

    api.app.extensions["adapter_limiter"] = RedisLimiter(f"redis://127.0.0.1:{free_port()}/0")  # nothing there
    return api.check(api.shop(), "6400000000000011")


PRODUCERS = {name.lstrip("_"): producer for name, producer in dict(globals()).items()
             if name.lstrip("_") in CODES and callable(producer)}


def test_there_is_a_producer_for_every_documented_code():
    assert set(PRODUCERS) == set(CODES)


@pytest.mark.parametrize("code", sorted(CODES))
def test_each_documented_code_is_produced(api, monkeypatch, code):
    response = PRODUCERS[code](api, monkeypatch)
    assert response.status_code == CODES[code][0]
    assert response.get_json()["code"] == code
    assert response.mimetype == "application/problem+json"


# What a working till meets at the counter (not a bug of its own making): the employee reads the detail.
COUNTER_CODES = ("pass_not_usable", "category_not_allowed", "budget_not_found", "insufficient_balance",
                 "redemption_not_found", "reversal_exceeds_redemption", "reversal_window_closed", "rate_limited")
API_WORDS = re.compile(r"/v1/|\b[a-z]+_[a-z_]+\b|\btrue\b")  # a path, a field name, a JSON value


@pytest.mark.parametrize("code", COUNTER_CODES)
def test_a_detail_the_employee_reads_names_no_field_or_path_of_the_api(api, monkeypatch, code):
    detail = PRODUCERS[code](api, monkeypatch).get_json()["detail"]
    assert not API_WORDS.search(detail), detail


def test_the_other_forms_of_a_counter_detail_name_no_field_or_path_either():
    from adapter.api import render

    for detail in (render.insufficient_detail(0, 1_250), render.insufficient_detail(500, 1_250),
                   render.reversal_exceeds_detail(0), render.reversal_exceeds_detail(500)):
        assert not API_WORDS.search(detail), detail


def test_app_builds_from_the_example_settings(tmp_path, sqlite_url):
    app = create_app(settings=make_settings(tmp_path, sqlite_url))
    assert app.extensions["adapter_openapi"]["info"]["version"] == "2.0.0"
