"""Rate limits at the counter, on the database and on Redis, with the clock pinned to one window."""

from __future__ import annotations

import random
import re

import pytest

from adapter.limits import DatabaseLimiter, RedisLimiter
from adapter.models import PassState
from tests.api.conftest import build_api
from tests.conftest import REDIS_URL, redis_limiter

PINNED = 1_800_000_030.0  # 30 s into a minute: every hit of a test falls in the same window


def _redis_limiter() -> RedisLimiter:
    return redis_limiter(clock=lambda: PINNED)


@pytest.fixture(params=["database", "redis"])
def limited_api(request, tmp_path, sqlite_url, vault):  # type: ignore[no-untyped-def]
    built = build_api(tmp_path, sqlite_url, vault,
                      api={"rate_limits": {"balance_checks_per_minute": 1_200, "unknown_pass_lookups_per_minute": 10}})
    if request.param == "redis":
        built.app.extensions["adapter_limiter"] = _redis_limiter()
    else:
        built.app.extensions["adapter_limiter"] = DatabaseLimiter(built.db, clock=lambda: PINNED)
    yield built
    built.db.dispose()


def test_enumerating_pass_numbers_is_stopped_after_the_threshold(limited_api):
    api = limited_api
    child, blocked = api.child(), api.child(state=PassState.BLOCKED)
    key = api.shop()
    rng = random.Random(7)
    statuses = [api.check(key, f"64{rng.randrange(10**13, 10**14)}").status_code for _ in range(1_000)]
    assert statuses[:10] == [404] * 10
    assert statuses[10:] == [429] * 990
    # Once over the threshold, a real pass answers 429 too: a hit teaches the attacker nothing.
    refused = api.check(key, child.pass_number)
    assert refused.status_code == 429 and refused.get_json()["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) == 30
    assert api.check(key, blocked.pass_number).status_code == 429
    # Another shop's key is not affected.
    assert api.check(api.shop("Andere winkel"), child.pass_number).status_code == 200


def test_after_the_threshold_a_redemption_on_a_real_pass_is_refused_and_takes_nothing(limited_api):
    api = limited_api
    child = api.child(amount_cents=5_000)
    key = api.shop()
    assert [api.check(key, f"640000000000{n:02d}").status_code for n in range(10)] == [404] * 10
    refused = api.redeem(key, {"pass_number": child.pass_number, "amount_cents": 500, "category": "school"})
    assert refused.status_code == 429 and refused.get_json()["code"] == "rate_limited"
    assert api.balance_cents(child.budget_id) == 5_000


def test_balance_checks_per_key_per_minute(tmp_path, sqlite_url, vault):
    api = build_api(tmp_path, sqlite_url, vault, api={"rate_limits": {"balance_checks_per_minute": 5}})
    api.app.extensions["adapter_limiter"] = DatabaseLimiter(api.db, clock=lambda: PINNED)
    child, key = api.child(), api.shop()
    statuses = [api.check(key, child.pass_number).status_code for _ in range(7)]
    assert statuses == [200] * 5 + [429] * 2
    api.app.extensions["adapter_limiter"].clock = lambda: PINNED + 60  # the next minute
    assert api.check(key, child.pass_number).status_code == 200
    api.db.dispose()


def test_redis_limiter_counts_per_bucket_and_window():
    limiter = _redis_limiter()
    verdicts = [limiter.hit("bucket-a", 3) for _ in range(4)]
    assert [verdict.allowed for verdict in verdicts] == [True, True, True, False]
    assert verdicts[-1].hits == 4 and verdicts[-1].retry_after_seconds == 30
    assert limiter.peek("bucket-a", 3).allowed is False
    assert limiter.peek("bucket-b", 3).allowed is True and limiter.hit("bucket-b", 3).hits == 1
    limiter.clock = lambda: PINNED + 60
    assert limiter.hit("bucket-a", 3).hits == 1
    ttl = limiter.client.ttl(f"{limiter.prefix}bucket-a:{int((PINNED + 60) // 60 * 60)}")
    assert 0 < ttl <= 61


def test_limiter_chosen_by_environment(tmp_path, sqlite_url, vault, monkeypatch):
    from adapter.limits import limiter_for
    from adapter.db import Database

    database = Database(sqlite_url)
    monkeypatch.delenv("ADAPTER_REDIS_URL", raising=False)
    assert isinstance(limiter_for(database), DatabaseLimiter)
    monkeypatch.setenv("ADAPTER_REDIS_URL", REDIS_URL)
    assert isinstance(limiter_for(database), RedisLimiter)
    database.dispose()


def test_a_blocked_pass_costs_the_same_statements_as_an_unknown_one(limited_api):
    """Identical 404 bodies are not enough: a second read for only one of them would show in the timing."""
    from sqlalchemy import event

    api = limited_api
    blocked, key = api.child(state=PassState.BLOCKED), api.shop()
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args):  # type: ignore[no-untyped-def]
        statements.append(statement)

    assert api.check(key, "6400000000009998").status_code == 404  # the key's first use also reads the key
    event.listen(api.db.engine, "before_cursor_execute", count)
    try:
        per_request = []
        for number in (blocked.pass_number, "6400000000009999"):
            statements.clear()
            assert api.check(key, number).status_code == 404
            per_request.append(len(statements))
    finally:
        event.remove(api.db.engine, "before_cursor_execute", count)
    assert per_request[0] == per_request[1]


def test_concurrent_unknown_look_ups_pass_the_limit_by_at_most_those_in_flight(tmp_path, sqlite_url, vault):
    """The documented bound (adapter.limits): limit 3, 12 look-ups sent at once to a threaded server: at most
    3 + 11 answer 'unknown', and once they are done every look-up is refused until the window ends."""
    import json
    import threading
    import urllib.error
    import urllib.request

    from werkzeug.serving import make_server

    built = build_api(tmp_path, sqlite_url, vault,
                      api={"rate_limits": {"balance_checks_per_minute": 1_200, "unknown_pass_lookups_per_minute": 3}})
    built.app.extensions["adapter_limiter"] = DatabaseLimiter(built.db, clock=lambda: PINNED)
    key = built.shop()
    server = make_server("127.0.0.1", 0, built.app, threaded=True)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    url = f"http://127.0.0.1:{server.server_port}/v1/balance-checks"
    at_once = threading.Barrier(12)
    statuses: list[int] = []

    def look_up(number: str) -> None:
        request = urllib.request.Request(url, data=json.dumps({"pass_number": number}).encode(), method="POST",
                                         headers={"Authorization": f"Bearer {key}",
                                                  "Content-Type": "application/json"})
        at_once.wait()
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                statuses.append(answer.status)
        except urllib.error.HTTPError as refused:
            statuses.append(refused.code)

    try:
        threads = [threading.Thread(target=look_up, args=(f"64009999{n:08d}",)) for n in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        at_once = threading.Barrier(1)
        look_up("6400999900009999")
    finally:
        server.shutdown()
        built.db.dispose()
    burst, after = statuses[:12], statuses[12]
    assert set(burst) <= {404, 429} and 3 <= burst.count(404) <= 3 + 11, burst
    assert after == 429


def test_when_redis_goes_away_the_counter_is_refused_with_503_and_ready_says_why(tmp_path, sqlite_url, vault):
    """Fail closed (an enumerator is not let through uncounted), but as a 503 the till can act on, not a 500."""
    import redis
    from flask.testing import FlaskClient

    from tests.api.live_server import free_port

    api = build_api(tmp_path, sqlite_url, vault)
    limiter = api.app.extensions["adapter_limiter"] = _redis_limiter()
    child, key = api.child(amount_cents=5_000), api.shop()
    assert api.check(key, child.pass_number).status_code == 200
    limiter.client = redis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=2)  # gone

    for refused in (api.check(key, child.pass_number), api.check(key, "6400000000009999"),
                    api.redeem(key, {"pass_number": child.pass_number, "amount_cents": 500, "category": "school"})):
        assert refused.status_code == 503 and refused.get_json()["code"] == "limits_unavailable"
        assert "niets afgeschreven" in refused.get_json()["detail"] and refused.headers["Retry-After"]
    assert api.balance_cents(child.budget_id) == 5_000
    ready = api.client.get("/v1/ready")
    assert ready.status_code == 503 and "ADAPTER_REDIS_URL" in ready.get_json()["detail"]
    browser = FlaskClient(api.app, api.app.response_class, use_cookies=True)  # the pages are not in the OpenAPI
    form = browser.get("/counter/aanmelden").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    sign_in = browser.post("/counter/aanmelden", data={"api_key": key, "csrf_token": token})
    assert sign_in.status_code == 503 and sign_in.mimetype == "text/html"
    assert "Probeer het over een minuut opnieuw" in sign_in.get_data(as_text=True)
    api.db.dispose()


def test_a_retry_of_a_paid_redemption_while_redis_is_away_does_not_tell_the_till_it_is_unpaid(
        tmp_path, sqlite_url, vault):  # type: ignore[no-untyped-def]
    """The till retries with the same key, as a 503 database_unavailable told it to, after the first attempt was
    paid. The limits are judged before the key's record is read, so with Redis away the retry is refused: the answer
    must not let the till conclude the sale is unpaid, but say to retry with the same key."""
    import redis

    from tests.api.live_server import free_port

    api = build_api(tmp_path, sqlite_url, vault)
    limiter = api.app.extensions["adapter_limiter"] = _redis_limiter()
    child, key = api.child(amount_cents=5_000), api.shop()
    body = {"pass_number": child.pass_number, "amount_cents": 500, "category": "school"}
    assert api.redeem(key, body, key="till-1-bon-7").status_code == 201
    limiter.client = redis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=2)  # gone

    retry = api.redeem(key, body, key="till-1-bon-7")
    assert retry.status_code == 503 and retry.get_json()["code"] == "limits_unavailable"
    assert api.balance_cents(child.budget_id) == 4_500  # the first attempt was paid
    assert "dezelfde Idempotency-Key" in retry.get_json()["detail"]
    api.db.dispose()


def test_a_redemption_refused_by_the_unusable_pass_limit_says_to_retry_with_the_same_key(
        limited_api):  # type: ignore[no-untyped-def]
    """A twin of the request may still be running (or the till's earlier attempt went to another worker): the answer
    must not let the till conclude the sale is unpaid (and start over under a new key: a second debit), but say to
    retry later with the same key."""
    api = limited_api
    child, key = api.child(amount_cents=5_000), api.shop()
    body = {"pass_number": child.pass_number, "amount_cents": 500, "category": "school"}
    assert [api.check(key, f"640000000000{n:02d}").status_code for n in range(10)] == [404] * 10

    refused = api.redeem(key, body, key="till-1-bon-9")
    assert refused.status_code == 429 and refused.get_json()["code"] == "rate_limited"
    assert api.balance_cents(child.budget_id) == 5_000
    assert "dezelfde Idempotency-Key" in refused.get_json()["detail"]
    # A balance check has no key: its refusal says nothing of one.
    assert "Idempotency-Key" not in api.check(key, child.pass_number).get_json()["detail"]


def test_a_retry_of_a_paid_redemption_gets_its_answer_also_over_the_unusable_pass_limit(
        limited_api):  # type: ignore[no-untyped-def]
    """The limit is judged before the key's record is read; a till's retry of a paid sale whose answer got lost must
    still get that answer, not a minute of 429s in which it does not know whether it paid. The replay tells the shop
    nothing it was not told before; another body under the key, or a new key, is still refused."""
    api = limited_api
    child, key = api.child(amount_cents=5_000), api.shop()
    body = {"pass_number": child.pass_number, "amount_cents": 500, "category": "school"}
    first = api.redeem(key, body, key="till-1-bon-8")
    assert first.status_code == 201
    assert [api.check(key, f"640000000000{n:02d}").status_code for n in range(10)] == [404] * 10

    retry = api.redeem(key, body, key="till-1-bon-8")
    assert retry.status_code == 201 and retry.data == first.data and retry.headers["Idempotent-Replayed"] == "true"
    assert api.balance_cents(child.budget_id) == 4_500
    assert api.redeem(key, {**body, "amount_cents": 600}, key="till-1-bon-8").status_code == 429
    assert api.redeem(key, body, key="till-1-bon-10").status_code == 429
    assert api.balance_cents(child.budget_id) == 4_500
