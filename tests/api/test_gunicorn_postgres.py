"""Through HTTP, against gunicorn with several workers on PostgreSQL: no overspending, one effect per
key, "in progress" while a twin runs, and a worker killed mid-flight losing or doubling nothing.

One server for the module; every answer is checked against the server's own OpenAPI document.
"""

from __future__ import annotations

import http.client
import os
import signal
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

from adapter import ledger
from adapter.db import Database
from adapter.models import IdempotencyRecord, Redemption
from tests import factories
from tests.api.live_server import Answer, LiveServer, call
from tests.api.openapi_check import OpenApiChecker

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
WAIT_MS = 300
PERIOD = (date.today() - timedelta(days=30), date.today() + timedelta(days=30))


@pytest.fixture(scope="module")
def live(postgres_databases, tmp_path_factory):  # type: ignore[no-untyped-def]
    url = postgres_databases.fresh()
    workdir = tmp_path_factory.mktemp("live")
    server = LiveServer({"environment": "development", "data_dir": str(workdir / "var"),
                         "database": {"url": url},
                         "api": {"idempotency_wait_ms": WAIT_MS,
                                 "rate_limits": {"balance_checks_per_minute": 10_000}}}, workdir, workers=4)
    db = Database(url, pool_size=5)
    checker = OpenApiChecker(call("GET", server.base_url + "/v1/openapi.json").json())
    yield server, db, checker
    server.stop()
    db.dispose()


def _post(live, path, body, api_key, idempotency_key):  # type: ignore[no-untyped-def]
    server, _, checker = live
    answer = call("POST", server.base_url + path, body,
                  {"Authorization": f"Bearer {api_key}", "Idempotency-Key": idempotency_key})
    checker.check("POST", urlsplit(server.base_url + path).path, answer.status, answer.headers, answer.body)
    return answer


def _setup(live, amount_cents):  # type: ignore[no-untyped-def]
    _, db, _ = live
    from tests.conftest import TEST_BLIND_INDEX_KEY, TEST_ENCRYPTION_KEY
    from adapter.crypto import Vault
    child = factories.child_with_budget(db, Vault([TEST_ENCRYPTION_KEY], TEST_BLIND_INDEX_KEY),
                                        amount_cents=amount_cents, period=PERIOD)
    return child, factories.merchant(db, f"Winkel {uuid.uuid4().hex[:6]}")


def test_fifty_concurrent_redemptions_never_overspend(live):
    child, shop = _setup(live, 10_000)
    body = {"pass_number": child.pass_number, "amount_cents": 1_000, "category": "school"}
    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(lambda n: _post(live, "/v1/redemptions", body, shop.api_key, f"k-{n}"), range(50)))
    assert sorted(answer.status for answer in answers) == [201] * 10 + [422] * 40
    assert {answer.json()["code"] for answer in answers if answer.status == 422} == {"insufficient_balance"}
    _, db, _ = live
    with db.read() as session:
        assert ledger.balance_of(session, child.budget_id) == 0
        assert ledger.verify(session) == []


def test_same_key_from_twenty_clients_has_one_effect(live):
    child, shop = _setup(live, 10_000)
    body = {"pass_number": child.pass_number, "amount_cents": 1_500, "category": "school"}
    start = threading.Barrier(20)

    def send(_):  # type: ignore[no-untyped-def]
        start.wait()
        return _post(live, "/v1/redemptions", body, shop.api_key, "till-3-receipt-77")

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(send, range(20)))
    created = [answer for answer in answers if answer.status == 201]
    assert created and {answer.status for answer in answers} <= {201, 409}
    assert len({answer.body for answer in created}) == 1  # every 201 is the first answer, byte for byte
    assert sum(answer.headers.get("Idempotent-Replayed") != "true" for answer in created) == 1
    _, db, _ = live
    with db.read() as session:
        assert session.execute(select(func.count()).select_from(Redemption)
                               .where(Redemption.budget_id == child.budget_id)).scalar_one() == 1
        assert ledger.balance_of(session, child.budget_id) == 8_500


def test_a_twin_still_running_answers_409_then_the_retry_succeeds(live):
    child, shop = _setup(live, 5_000)
    _, db, _ = live
    body = {"pass_number": child.pass_number, "amount_cents": 500, "category": "school"}
    # Play the first request: hold its idempotency row uncommitted, as a running request does.
    session_cm = db.write()
    session = session_cm.__enter__()
    session.add(IdempotencyRecord(merchant_id=shop.merchant_id, key="busy-1", request_hash="x", outcome_json="{}"))
    session.flush()
    try:
        busy = _post(live, "/v1/redemptions", body, shop.api_key, "busy-1")
    finally:
        session.rollback()
        session_cm.__exit__(None, None, None)
    assert busy.status == 409 and busy.json()["code"] == "idempotency_request_in_progress"
    assert busy.headers["Retry-After"] == "1"
    retried = _post(live, "/v1/redemptions", body, shop.api_key, "busy-1")
    assert retried.status == 201


def test_worker_killed_mid_flight_loses_and_doubles_nothing(live):
    server, db, _ = live
    child, shop = _setup(live, 100_000)
    keys = [f"kill-{n}" for n in range(80)]
    body = {"pass_number": child.pass_number, "amount_cents": 100, "category": "school"}
    seen: dict[str, Answer | Exception] = {}
    first_answers = threading.Event()

    def send(key):  # type: ignore[no-untyped-def]
        try:
            seen[key] = _post(live, "/v1/redemptions", body, shop.api_key, key)
            first_answers.set()
        # The connection died with the worker: before the answer (OSError), or between its headers and its
        # body (IncompleteRead, an HTTPException).
        except (OSError, http.client.HTTPException) as exc:
            seen[key] = exc

    with ThreadPoolExecutor(max_workers=16) as pool:
        futures = [pool.submit(send, key) for key in keys]
        assert first_answers.wait(30)
        victim = server.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        for future in futures:
            future.result()

    succeeded = [key for key, answer in seen.items() if isinstance(answer, Answer) and answer.status == 201]
    assert succeeded and all(isinstance(seen[key], Exception) or seen[key].status == 201 for key in keys)

    def redemptions_by_key():  # type: ignore[no-untyped-def]
        with db.read() as session:
            return dict(session.execute(
                select(Redemption.idempotency_key, func.count()).where(Redemption.merchant_id == shop.merchant_id)
                .group_by(Redemption.idempotency_key)).all())

    counted = redemptions_by_key()
    assert all(counted.get(key) == 1 for key in succeeded)

    # The till retries everything it sent; the workers have been replaced by now.
    deadline = time.monotonic() + 20
    while len(server.worker_pids()) < 4 and time.monotonic() < deadline:
        time.sleep(0.1)
    retried = {key: _post(live, "/v1/redemptions", body, shop.api_key, key) for key in keys}
    assert all(answer.status == 201 for answer in retried.values())
    for key in succeeded:
        assert retried[key].json()["redemption_id"] == seen[key].json()["redemption_id"]
        assert retried[key].headers["Idempotent-Replayed"] == "true"
    after_retry = redemptions_by_key()
    assert after_retry == {key: 1 for key in keys}
    again = {key: _post(live, "/v1/redemptions", body, shop.api_key, key) for key in keys}
    assert all(answer.headers["Idempotent-Replayed"] == "true" for answer in again.values())
    assert redemptions_by_key() == after_retry
    with db.read() as session:
        assert ledger.balance_of(session, child.budget_id) == 100_000 - 100 * len(keys)
        assert ledger.verify(session) == []
