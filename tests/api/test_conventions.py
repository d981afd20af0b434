"""The rules every endpoint follows: JSON only, bounded and strict bodies, keys, nothing personal in URLs."""

from __future__ import annotations

import json

import pytest

from adapter.api.problems import CODES


def _auth(key):  # type: ignore[no-untyped-def]
    return {"Authorization": f"Bearer {key}"}


def test_every_problem_is_reported_at_once(api):
    key = api.shop()
    response = api.client.post("/v1/redemptions", headers=_auth(key), json={
        "pass_number": "64-00", "amount_cents": 0, "category": "school", "reference": "x" * 129,
        "allow_partial": "yes", "tip_cents": 5})
    assert response.status_code == 400
    problem = response.get_json()
    assert problem["code"] == "invalid_request"
    assert {(param["name"]) for param in problem["invalid_params"]} == {
        "Idempotency-Key", "pass_number", "amount_cents", "reference", "allow_partial", "tip_cents"}
    assert "tip_cents" in problem["detail"]


@pytest.mark.parametrize("body, name", [
    ({"pass_number": "6400000000000011", "amount_cents": 100_001, "category": "school"}, "amount_cents"),
    ({"pass_number": "6400000000000011", "amount_cents": "100", "category": "school"}, "amount_cents"),
    ({"pass_number": "6400000000000011", "amount_cents": True, "category": "school"}, "amount_cents"),
    ({"pass_number": 6400000000000011, "amount_cents": 100, "category": "school"}, "pass_number"),
    ({"pass_number": "6" * 33, "amount_cents": 100, "category": "school"}, "pass_number"),
    ({"pass_number": "6400000000000011", "amount_cents": 100}, "category"),
    ({"pass_number": "6400000000000011", "amount_cents": 100, "category": "school", "budget_id": 1}, "category"),
])
def test_bounds_and_types_are_strict(api, body, name):
    response = api.redeem(api.shop(), body)
    assert response.status_code == 400
    assert [param["name"] for param in response.get_json()["invalid_params"]] == [name]


@pytest.mark.parametrize("amount", [12.5, "12.50", "1250", "12,50"])
def test_an_amount_in_euros_is_told_to_be_sent_in_cents(api, amount):
    """A till that sends euros (12.5, "12.50") must learn the unit, not only that a whole number is wanted: rounding
    12.5 to 12 or 13 would take 12 or 13 cents for a € 12,50 purchase."""
    child = api.child()
    key = api.shop()
    redemption = api.redeem(key, {"pass_number": child.pass_number, "amount_cents": amount, "category": "school"})
    reversal = api.reverse(key, "00000000-0000-4000-8000-000000000000", {"amount_cents": amount, "reason": "retour"})
    for answer in (redemption, reversal):
        assert answer.status_code == 400
        [param] = answer.get_json()["invalid_params"]
        assert param["name"] == "amount_cents"
        assert "eurocent" in param["reason"] and "1250" in param["reason"]
    assert api.balance_cents(child.budget_id) == 10_000


@pytest.mark.parametrize("idempotency_key", ["", "x" * 129, "spatie erin", "ünïcode"])
def test_idempotency_key_is_bounded(api, idempotency_key):
    child = api.child()
    response = api.client.post("/v1/redemptions", headers={**_auth(api.shop()), "Idempotency-Key": idempotency_key},
                               json={"pass_number": child.pass_number, "amount_cents": 100, "category": "school"})
    assert response.status_code == 400
    assert response.get_json()["invalid_params"][0]["name"] == "Idempotency-Key"


def test_json_only_and_body_size(api):
    key = api.shop()
    as_form = api.client.post("/v1/balance-checks", data={"pass_number": "6400000000000011"}, headers=_auth(key))
    assert as_form.status_code == 415 and as_form.get_json()["code"] == "unsupported_media_type"
    huge = json.dumps({"pass_number": "1" * 20_000})
    too_large = api.client.post("/v1/balance-checks", data=huge, content_type="application/json",
                                headers=_auth(key))
    assert too_large.status_code == 413 and too_large.get_json()["code"] == "body_too_large"
    broken = api.client.post("/v1/balance-checks", data="{not json", content_type="application/json",
                             headers=_auth(key))
    assert broken.status_code == 400 and broken.get_json()["invalid_params"][0]["reason"] == "geen geldige JSON"


def test_pass_number_in_the_url_is_refused(api):
    child = api.child()
    response = api.client.post(f"/v1/balance-checks?pass_number={child.pass_number}", headers=_auth(api.shop()),
                               json={"pass_number": child.pass_number})
    assert response.status_code == 400
    assert response.get_json()["invalid_params"] == [
        {"name": "pass_number", "reason": "hoort niet in de URL; stuur het in de JSON-body"}]
    assert child.pass_number not in response.get_data(as_text=True)


def test_keys_missing_wrong_rotated_and_disabled(api):
    from datetime import timedelta

    from adapter import merchants
    from tests import factories

    child = api.child()
    missing = api.client.post("/v1/balance-checks", json={"pass_number": child.pass_number})
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == 'Bearer realm="stadspas-adapter"'
    assert missing.get_json()["detail"].startswith("Geen API-sleutel meegestuurd.")
    # The bare key, without its scheme, is a key sent in the wrong form, not a missing one.
    bare = api.client.post("/v1/balance-checks", json={"pass_number": child.pass_number},
                           headers={"Authorization": "spk_" + "x" * 43})
    assert bare.status_code == 401 and bare.headers["WWW-Authenticate"] == 'Bearer realm="stadspas-adapter"'
    assert "'Bearer '" in bare.get_json()["detail"] and "Geen API-sleutel" not in bare.get_json()["detail"]
    wrong = api.check("spk_" + "x" * 43, child.pass_number)
    assert wrong.status_code == 401 and 'error="invalid_token"' in wrong.headers["WWW-Authenticate"]

    issued = factories.merchant(api.db)
    with api.db.write() as session:
        rotated = merchants.rotate_key(session, issued.merchant_id, timedelta(hours=24))
    assert api.check(issued.api_key, child.pass_number).status_code == 200  # within the grace period
    assert api.check(rotated.api_key, child.pass_number).status_code == 200
    with api.db.write() as session:
        merchants.disable_merchant(session, issued.merchant_id)
    _age_key_cache(api)  # a worker remembers a good key for api.auth_cache_seconds (test_key_cache.py)
    assert api.check(rotated.api_key, child.pass_number).status_code == 401
    assert api.check(issued.api_key, child.pass_number).status_code == 401


def _age_key_cache(api) -> None:  # type: ignore[no-untyped-def]
    import time

    cache = api.app.extensions["adapter_key_cache"]
    cache.clock = lambda: time.time() + cache.ttl_seconds


def test_every_answer_carries_the_api_version_and_utc_times(api):
    child = api.child()
    key = api.shop()
    for response in (api.client.get("/v1/health"), api.client.get("/v1/nothing"), api.check(key, child.pass_number),
                     api.client.delete("/v1/redemptions", headers=_auth(key))):
        assert response.headers["API-Version"] == "2.0.0"
    created = api.redeem(key, {"pass_number": child.pass_number, "amount_cents": 100, "category": "school"})
    assert created.get_json()["created_at"].endswith("Z")


def test_problem_titles_and_types_are_stable(api):
    assert all(isinstance(status, int) and title for status, title in CODES.values())
    response = api.client.get("/v1/nothing-here")
    body = response.get_json()
    assert body["type"] == "https://stadspas-adapter.example/problems/not_found"
    assert response.mimetype == "application/problem+json"


def test_a_wrong_address_or_method_is_named_as_such_whatever_the_body(api):
    """A till posting a form to a mistyped address hears that the address is wrong, not that its content type is:
    changing the content type would not help it."""
    key = api.shop()
    unknown = api.client.post("/v1/balance-check", data={"pass_number": "6400000000000011"}, headers=_auth(key))
    assert unknown.status_code == 404 and unknown.get_json()["code"] == "not_found"
    wrong_method = api.client.put("/v1/balance-checks", data="x", content_type="text/plain", headers=_auth(key))
    assert wrong_method.status_code == 405 and wrong_method.get_json()["code"] == "method_not_allowed"


def test_options_names_the_methods_without_a_key(api):
    """An OPTIONS request (a browser's preflight, an integrator's probe) carries no key by design: it is answered
    with the methods the address takes, and says nothing else."""
    response = api.client.options("/v1/balance-checks")
    assert response.status_code == 200
    assert set(response.headers["Allow"].split(", ")) == {"POST", "OPTIONS"}
    assert response.get_data() == b""
