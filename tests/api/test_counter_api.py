"""Balance checks and redemptions as a till sees them."""

from __future__ import annotations

import pytest

from adapter.models import Pass, PassState


def test_balance_check_shows_only_what_the_counter_needs(api):
    """That the pass is valid, the child's first name and the balances this shop may redeem, and no more: not the
    child's age, nor a budget of another kind of shop (which tells what else the child is entitled to)."""
    child = api.child(amount_cents=7_500)
    school_shop, clothing_shop = api.shop(categories=("school",)), api.shop(categories=("clothing",))
    response = api.check(school_shop, child.pass_number)
    assert response.status_code == 200
    body = response.get_json()
    assert body["pass"]["status"] == "active"
    assert body["holder"] == {"name": "Sanne"}
    assert [(b["budget_id"], b["category"], b["available_cents"]) for b in body["budgets"]] \
        == [(child.budget_id, "school", 7_500)]
    assert body["as_of"].endswith("Z")
    text = response.get_data(as_text=True)
    for personal in ("Jansen", "999993653", "2015-05-05", child.pass_number):
        assert personal not in text
    elsewhere = api.check(clothing_shop, child.pass_number).get_json()
    assert (elsewhere["holder"], elsewhere["budgets"]) == ({"name": "Sanne"}, [])


def test_redemption_takes_money_and_replay_answers_the_same_bytes(api_any):
    api = api_any
    child = api.child(amount_cents=10_000)
    key = api.shop()
    body = {"pass_number": child.pass_number, "amount_cents": 2_500, "category": "school", "reference": "bon-1"}
    first = api.redeem(key, body, key="till-1-0001")
    assert first.status_code == 201
    created = first.get_json()
    assert (created["amount_cents"], created["remaining_to_pay_cents"], created["available_cents_after"]) == \
        (2_500, 0, 7_500)
    assert first.headers["Location"] == f"/v1/redemptions/{created['redemption_id']}"
    assert "Idempotent-Replayed" not in first.headers

    replay = api.redeem(key, body, key="till-1-0001")
    assert replay.status_code == 201 and replay.data == first.data
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert api.balance_cents(child.budget_id) == 7_500
    # A retry that spells out a default is still the same request.
    explicit = api.redeem(key, {**body, "allow_partial": False}, key="till-1-0001")
    assert explicit.status_code == 201 and explicit.data == first.data

    reused = api.redeem(key, {**body, "amount_cents": 2_600}, key="till-1-0001")
    assert reused.status_code == 422 and reused.get_json()["code"] == "idempotency_key_reused"
    assert api.balance_cents(child.budget_id) == 7_500
    assert api.verify_ledger() == []


def test_a_pass_number_as_a_scanner_or_a_person_sends_it_is_read_as_its_digits(api):
    """A scanner ends the number with a line end (or a tab), and people type the groups as printed on the pass; the
    counter page takes both. Through a till the same scan must work, and a retry in the other form is the same
    request."""
    child = api.child(amount_cents=5_000)
    key = api.shop()
    number = child.pass_number
    grouped = " ".join(number[start:start + 4] for start in range(0, len(number), 4))
    assert api.check(key, number + "\r\n").status_code == 200
    assert api.check(key, "\t" + grouped + "\n").status_code == 200

    body = {"pass_number": grouped + "\r\n", "amount_cents": 500, "category": "school"}
    first = api.redeem(key, body, key="till-1-scan")
    assert first.status_code == 201
    retry = api.redeem(key, {**body, "pass_number": number}, key="till-1-scan")
    assert retry.status_code == 201 and retry.headers["Idempotent-Replayed"] == "true"
    assert api.balance_cents(child.budget_id) == 4_500

    lettered = api.check(key, number[:-1] + "A")
    assert lettered.status_code == 400
    assert lettered.get_json()["invalid_params"][0]["name"] == "pass_number"


def test_a_failure_after_the_payment_committed_says_to_retry_with_the_same_key(api, monkeypatch):
    """A 500 does not tell the till whether the money moved: here it did. Told only "try again", a till may start
    the sale over under a new key and debit twice; with the same key its retry gets the payment's answer."""
    from adapter.api import render

    child = api.child(amount_cents=5_000)
    key = api.shop()
    body = {"pass_number": child.pass_number, "amount_cents": 500, "category": "school"}
    rendered = render.redemption

    def broken(outcome):  # type: ignore[no-untyped-def]
        raise RuntimeError("rendering broke after the commit")
    monkeypatch.setattr(render, "redemption", broken)
    failed = api.redeem(key, body, key="till-1-bon-500")
    assert failed.status_code == 500 and "dezelfde Idempotency-Key" in failed.get_json()["detail"]
    assert api.balance_cents(child.budget_id) == 4_500

    monkeypatch.setattr(render, "redemption", rendered)
    retry = api.redeem(key, body, key="till-1-bon-500")
    assert retry.status_code == 201 and retry.headers["Idempotent-Replayed"] == "true"
    assert api.balance_cents(child.budget_id) == 4_500


def test_replay_answers_as_the_first_time_even_after_the_pass_was_blocked(api):
    child = api.child(amount_cents=1_000)
    key = api.shop()
    body = {"pass_number": child.pass_number, "amount_cents": 400, "budget_id": child.budget_id}
    first = api.redeem(key, body, key="k-blocked")
    with api.db.write() as session:
        session.get(Pass, child.pass_id).status = PassState.BLOCKED
    assert api.redeem(key, body, key="k-blocked").data == first.data
    assert api.redeem(key, body, key="k-new").get_json()["code"] == "pass_not_usable"


def test_too_little_balance_says_what_is_left_in_dutch(api):
    child = api.child(amount_cents=1_250)
    key = api.shop()
    body = {"pass_number": child.pass_number, "amount_cents": 2_000, "category": "school"}
    refused = api.redeem(key, body, key="k-low")
    problem = refused.get_json()
    assert refused.status_code == 422 and problem["code"] == "insufficient_balance"
    assert problem["available_cents"] == 1_250
    assert problem["detail"] == ("Het tegoed is te laag: nog € 12,50 beschikbaar. Reken € 12,50 af van het tegoed "
                                 "en laat de ouder het verschil van € 7,50 zelf betalen.")
    # The refusal is the stored outcome of that key: a replay refuses the same way, and says it is a replay.
    again = api.redeem(key, body, key="k-low")
    assert again.data == refused.data and again.headers["Idempotent-Replayed"] == "true"

    partial = api.redeem(key, {**body, "allow_partial": True}).get_json()
    assert (partial["amount_cents"], partial["remaining_to_pay_cents"], partial["available_cents_after"]) == \
        (1_250, 750, 0)


def test_category_not_allowed_and_no_such_budget(api):
    child = api.child(amount_cents=1_000, category="school")
    sport_shop = api.shop("Sportwinkel", ("sport",))
    refused = api.redeem(sport_shop, {"pass_number": child.pass_number, "amount_cents": 100, "category": "school"})
    assert refused.status_code == 403 and refused.get_json()["code"] == "category_not_allowed"
    missing = api.redeem(sport_shop, {"pass_number": child.pass_number, "amount_cents": 100, "category": "sport"})
    assert missing.status_code == 422 and missing.get_json()["code"] == "budget_not_found"
    assert api.balance_cents(child.budget_id) == 1_000


def test_a_redemption_does_not_tell_a_shop_which_budgets_for_other_shops_a_child_holds(api):
    # The balance check shows a shop only the budgets it may redeem (DOMAIN.md); a redemption's refusal must not
    # tell the rest by turning on whether the child holds a budget of another category.
    with_school = api.child(amount_cents=1_000, category="school")
    with_sport_only = api.child(amount_cents=1_000, category="sport")
    sport_shop = api.shop("Sportwinkel", ("sport",))

    def refusal(child, choice):  # type: ignore[no-untyped-def]
        answer = api.redeem(sport_shop, {"pass_number": child.pass_number, "amount_cents": 100, **choice})
        return answer.status_code, answer.data

    assert refusal(with_school, {"category": "school"}) == refusal(with_sport_only, {"category": "school"})
    assert refusal(with_school, {"category": "school"})[0] == 403
    other_shops_budget = refusal(with_school, {"budget_id": with_school.budget_id})
    assert other_shops_budget == refusal(with_school, {"budget_id": with_school.budget_id + 1_000})
    assert other_shops_budget[0] == 422 and b"budget_not_found" in other_shops_budget[1]
    assert api.balance_cents(with_school.budget_id) == 1_000


@pytest.mark.parametrize("state", [PassState.BLOCKED, PassState.REPLACED, PassState.EXPIRED])
def test_unusable_passes_answer_byte_identical_to_unknown_ones(api, state):
    child = api.child(state=state)
    key = api.shop()
    unusable = api.check(key, child.pass_number)
    unknown = api.check(key, "6499999999999999")
    assert unusable.status_code == unknown.status_code == 404
    assert unusable.data == unknown.data
    assert unknown.get_json()["code"] == "pass_not_usable"
    assert {k: v for k, v in unusable.headers.items() if k != "Date"} == \
        {k: v for k, v in unknown.headers.items() if k != "Date"}
    redeem_unusable = api.redeem(key, {"pass_number": child.pass_number, "amount_cents": 100, "category": "school"})
    redeem_unknown = api.redeem(key, {"pass_number": "6499999999999999", "amount_cents": 100, "category": "school"})
    assert redeem_unusable.data == redeem_unknown.data


def test_a_budget_is_spent_through_its_expiry_grace_and_not_a_day_after_even_before_the_rollover(api):
    """config/budgets.yaml grants 14 days after a period's end; the roll-over has not run for either budget."""
    from datetime import timedelta

    from sqlalchemy import update

    from adapter.counter import counter_today
    from tests import factories

    # The counter's day is Amsterdam's: date.today() on a UTC clock is a day behind it from 23:00 (22:00 in summer).
    today = counter_today()
    in_grace = factories.child_with_budget(api.db, api.vault, amount_cents=5_000,
                                           period=(today - timedelta(days=200), today - timedelta(days=14)))
    past_it = factories.child_with_budget(api.db, api.vault, amount_cents=5_000,
                                          period=(today - timedelta(days=200), today - timedelta(days=15)))
    with api.db.write() as session:  # the passes run on into the next period
        session.execute(update(Pass).where(Pass.id.in_([in_grace.pass_id, past_it.pass_id]))
                        .values(valid_until=today + timedelta(days=100)))
    key = api.shop()
    shown = api.check(key, in_grace.pass_number).get_json()["budgets"]
    assert [b["expires_on"] for b in shown] == [today.isoformat()]
    assert api.redeem(key, {"pass_number": in_grace.pass_number, "budget_id": in_grace.budget_id,
                            "amount_cents": 1_000}).status_code == 201
    assert api.check(key, past_it.pass_number).get_json()["budgets"] == []
    refused = api.redeem(key, {"pass_number": past_it.pass_number, "budget_id": past_it.budget_id,
                               "amount_cents": 1_000})
    assert refused.status_code == 422 and refused.get_json()["code"] == "budget_not_found"
    assert (api.balance_cents(in_grace.budget_id), api.balance_cents(past_it.budget_id)) == (4_000, 5_000)


def test_the_stored_request_fingerprint_is_keyed_so_the_pass_number_cannot_be_tried_back_from_it(api):
    """A plain hash of the body (with the full pass number) could be reversed by trying an issuer's range."""
    import hashlib
    import json

    from sqlalchemy import select

    from adapter.models import IdempotencyRecord

    child = api.child(amount_cents=5_000)
    key = api.shop()
    body = {"pass_number": child.pass_number, "amount_cents": 700, "category": "school"}
    assert api.redeem(key, body, key="one-purchase").status_code == 201
    with api.db.read() as session:
        stored = session.execute(select(IdempotencyRecord.request_hash)).scalar_one()
    canonical = json.dumps(["POST /v1/redemptions", {**body, "allow_partial": False, "budget_id": None,
                                                     "reference": None}],
                           sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    plain = hashlib.sha256(canonical.encode()).hexdigest()
    assert stored == api.vault.hashes.blind_index(plain, "request") and stored != plain
    assert api.redeem(key, body, key="one-purchase").headers.get("Idempotent-Replayed") == "true"


@pytest.mark.parametrize("field, value", [("reference", "bon\u0000 1"), ("reference", "bon\n2")])
def test_a_control_character_in_a_reference_is_a_dutch_400_not_a_500(api_any, field, value):
    """PostgreSQL refuses a NUL in text: it would have been a 500 whose 'try again' never works."""
    api = api_any
    child = api.child(amount_cents=5_000)
    answer = api.redeem(api.shop(), {"pass_number": child.pass_number, "amount_cents": 100, "category": "school",
                                     field: value})
    assert answer.status_code == 400, answer.get_data(as_text=True)
    [problem] = answer.get_json()["invalid_params"]
    assert problem == {"name": field, "reason": "mag geen stuurtekens bevatten (zoals een nul-byte, tab of "
                                                "regeleinde); laat ze weg"}
    assert api.balance_cents(child.budget_id) == 5_000


def test_a_reversal_reason_that_is_blank_or_holds_a_nul_is_refused_in_dutch(api_any):
    api = api_any
    child = api.child(amount_cents=5_000)
    key = api.shop()
    made = api.redeem(key, {"pass_number": child.pass_number, "amount_cents": 1_000, "category": "school"})
    redemption_id = made.get_json()["redemption_id"]
    said = ("mag niet leeg zijn en geen stuurtekens bevatten (zoals een nul-byte, tab of regeleinde); schrijf kort "
            "waarom u terugboekt")
    for reason in ("   ", "fout\u0000", "\u00a0"):
        answer = api.reverse(key, redemption_id, {"reason": reason})
        assert answer.status_code == 400 and answer.get_json()["invalid_params"] == [{"name": "reason",
                                                                                      "reason": said}], reason
        # The employee wants to know whether the refund was made, not only that nothing was debited.
        assert "niets afgeschreven of teruggeboekt" in answer.get_json()["detail"]
    assert api.reverse(key, redemption_id, {"reason": "kapot \u00e9\u00e9n schrift"}).status_code == 201
    assert api.balance_cents(child.budget_id) == 5_000


@pytest.mark.parametrize("query, reason", [
    ("limit=abc", "moet een geheel getal zijn"),
    ("from=gisteren", "moet een tijdstip zijn zoals 2026-03-01T00:00:00Z"),
    ("from=2024-01-01T00:00:00", "geef de tijdzone mee, zoals 2026-03-01T00:00:00Z of +01:00"),
    # Aware times whose UTC falls outside the calendar: a 400 that says so, not a 500 from the database layer.
    ("from=0001-01-01T00:00:00%2B14:00", "valt buiten de kalender; geef een moment zoals 2026-03-01T00:00:00+01:00"),
    ("to=9999-12-31T23:59:59-14:00", "valt buiten de kalender; geef een moment zoals 2026-03-01T00:00:00+01:00"),
])
def test_the_listings_query_errors_are_dutch(api, query, reason):
    answer = api.client.get(f"/v1/redemptions?{query}", headers={"Authorization": f"Bearer {api.shop()}"})
    assert answer.status_code == 400, answer.get_data(as_text=True)
    assert [param["reason"] for param in answer.get_json()["invalid_params"]] == [reason]
