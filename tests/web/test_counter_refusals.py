"""The counter page as an enumerator would use it: every form that takes a pass number is counted and refused
like the API, refusals look the same for real and unknown passes, replays answer first, and only ASCII digits parse.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from adapter.api import create_app
from adapter.db import Database
from adapter.limits import DatabaseLimiter, RedisLimiter
from adapter.models import Budget, EntryKind, LedgerEntry, Pass, PassState, utcnow
from adapter.periods import local_day
from tests import factories
from tests.conftest import make_settings, redis_limiter

PINNED = 1_800_000_030.0  # 30 s into a minute: every hit of a test falls in the same window
UNKNOWN_LIMIT = 3
UNKNOWN_PASS = "6400999999999999"


@dataclass
class Counter:
    app: object
    client: object
    db: Database
    limiter: DatabaseLimiter | RedisLimiter
    api_key: str
    pass_number: str
    budget_id: int
    other_pass_number: str  # a real pass whose only budget this shop may not redeem
    other_budget_id: int

    def token(self) -> str:
        page = self.client.get("/counter/").get_data(as_text=True)
        return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)

    def scan(self, pass_number: str):  # type: ignore[no-untyped-def]
        # The scan form answers with a redirect to the balance page, which looks the pass up.
        return self.client.post("/counter/pas", data={"csrf_token": self.token(), "pass_number": pass_number},
                                follow_redirects=True)

    def pay(self, **fields: str):  # type: ignore[no-untyped-def]
        form = {"csrf_token": self.token(), "amount": "5,00", "idempotency_key": "form-1", **fields}
        return self.client.post("/counter/afrekenen", data=form)

    def pay_and_follow(self, **fields: str):  # type: ignore[no-untyped-def]
        """A payment that was not made answers with a redirect to the balance page as it is now: follow it."""
        answer = self.pay(**fields)
        assert answer.status_code == 303 and "/counter/bon/" not in answer.headers["Location"]
        return self.client.get(answer.headers["Location"])


@pytest.fixture
def counter(request, tmp_path: Path, sqlite_url: str, vault) -> Iterator[Counter]:  # type: ignore[no-untyped-def]
    """Signed in at the counter; the limiter on the database, or on Redis when a test asks (indirect "redis")."""
    settings = make_settings(tmp_path, sqlite_url, api={"rate_limits": {
        "balance_checks_per_minute": 1_000, "unknown_pass_lookups_per_minute": UNKNOWN_LIMIT}})
    app = create_app(settings=settings)
    runtime = app.extensions["adapter_runtime"]
    limiter = _redis_limiter() if getattr(request, "param", None) == "redis" \
        else DatabaseLimiter(runtime.db, clock=lambda: PINNED)
    app.extensions["adapter_limiter"] = limiter
    year = local_day(utcnow()).year
    period = (date(year, 1, 1), date(year, 12, 31))
    child = factories.child_with_budget(runtime.db, vault, amount_cents=10_000, period=period)
    sport = factories.child_with_budget(runtime.db, vault, amount_cents=10_000, category="sport", period=period)
    shop = factories.merchant(runtime.db, "Boekhandel De Pen", ("school",))
    client = app.test_client()
    page = client.get("/counter/aanmelden").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    assert client.post("/counter/aanmelden", data={"csrf_token": token, "api_key": shop.api_key}).status_code == 303
    yield Counter(app, client, runtime.db, limiter, shop.api_key, child.pass_number, child.budget_id,
                  sport.pass_number, sport.budget_id)
    runtime.close()


def _redis_limiter() -> RedisLimiter:
    return redis_limiter(clock=lambda: PINNED)


def _without_form_tokens(page: str) -> str:
    return re.sub(r'name="(csrf_token|idempotency_key)" value="[^"]*"', "", page)


def _redemptions(db: Database) -> int:
    with db.read() as session:
        return session.execute(select(func.count()).select_from(LedgerEntry)
                               .where(LedgerEntry.kind == EntryKind.REDEMPTION)).scalar_one()


# ---------------------------------------------------------------- 1. the payment form is no oracle

def test_a_refused_payment_answers_alike_for_a_real_and_an_unknown_pass(counter):  # type: ignore[no-untyped-def]
    wrong_budget = str(counter.budget_id + 1_000)
    answers, pages = [], []
    for form in ({"pass_number": counter.pass_number, "budget_id": wrong_budget},
                 {"pass_number": UNKNOWN_PASS, "budget_id": wrong_budget, "idempotency_key": "form-2"},
                 {"pass_number": counter.other_pass_number, "budget_id": str(counter.other_budget_id),
                  "idempotency_key": "form-3"}):
        answers.append(counter.pay(**form))
        pages.append(_without_form_tokens(counter.client.get(answers[-1].headers["Location"]).get_data(as_text=True)))
    # Each a redirect to the scan page (never to the pass's balance, which would tell a real pass), with one message.
    assert {(answer.status_code, answer.headers["Location"]) for answer in answers} == {(303, "/counter/")}
    assert pages[0] == pages[1] == pages[2]
    assert "Sanne" not in pages[0] and "jaar" not in pages[0] and "Schoolspullen" not in pages[0]
    assert "niet bruikbaar" in pages[0] and "Er is niets afgeschreven" in pages[0] and "opnieuw" in pages[0]
    # Each refusal counted as an unusable look-up: the limit is now reached, a real pass shows nothing.
    refused = counter.scan(counter.pass_number)
    assert refused.status_code == 429 and "Sanne" not in refused.get_data(as_text=True)
    assert _redemptions(counter.db) == 0


def test_a_mistyped_amount_is_a_counted_look_up(counter):  # type: ignore[no-untyped-def]
    real = counter.pay_and_follow(pass_number=counter.pass_number, budget_id=str(counter.budget_id), amount="twaalf")
    assert real.status_code == 200 and "Sanne" in real.get_data(as_text=True)  # the clerk may retype it
    assert "Vul een bedrag in euro" in real.get_data(as_text=True)
    unknown_pages = [counter.pay_and_follow(pass_number=UNKNOWN_PASS, budget_id=str(counter.budget_id),
                                            amount="twaalf") for _ in range(UNKNOWN_LIMIT)]
    assert [page.status_code for page in unknown_pages] == [200] * UNKNOWN_LIMIT
    assert all("kan niet worden gebruikt" in page.get_data(as_text=True) for page in unknown_pages)
    after = counter.pay_and_follow(pass_number=counter.pass_number, budget_id=str(counter.budget_id), amount="twaalf")
    assert after.status_code == 429 and "Sanne" not in after.get_data(as_text=True)


# ---------------------------------------------------------------- 2. the limit comes before the look-up

@pytest.mark.parametrize("counter", ["database", "redis"], indirect=True)
def test_after_the_limit_every_look_up_is_refused_until_the_window_ends(counter):  # type: ignore[no-untyped-def]
    misses = [counter.scan(f"64009999999999{n:02d}") for n in range(UNKNOWN_LIMIT)]
    assert [miss.status_code for miss in misses] == [200] * UNKNOWN_LIMIT
    refused = counter.scan(counter.pass_number)
    page = refused.get_data(as_text=True)
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "30"
    assert "Sanne" not in page and "over 30 seconden" in page
    assert "Content-Security-Policy" in refused.headers and refused.headers["Cache-Control"] == "no-store"
    paid = counter.pay(pass_number=counter.pass_number, budget_id=str(counter.budget_id))
    assert paid.status_code == 429 and _redemptions(counter.db) == 0
    counter.limiter.clock = lambda: PINNED + 60  # the next minute
    assert "Sanne" in counter.scan(counter.pass_number).get_data(as_text=True)


def test_the_page_and_the_api_share_one_count_per_shop(counter):  # type: ignore[no-untyped-def]
    api = counter.app.test_client()
    for n in range(UNKNOWN_LIMIT):
        answer = api.post("/v1/balance-checks", json={"pass_number": f"64009999999999{n:02d}"},
                          headers={"Authorization": f"Bearer {counter.api_key}"})
        assert answer.status_code == 404
    assert counter.scan(counter.pass_number).status_code == 429


# ---------------------------------------------------------------- 3. a replay answers its first outcome

def test_a_resubmitted_payment_after_a_block_shows_the_first_receipt(counter):  # type: ignore[no-untyped-def]
    form = {"pass_number": counter.pass_number, "budget_id": str(counter.budget_id), "amount": "12,50",
            "idempotency_key": "form-receipt"}
    first = counter.pay(**form)
    assert first.status_code == 303 and "/counter/bon/" in first.headers["Location"]
    with counter.db.write() as session:
        session.execute(update(Pass).where(Pass.pass_number == counter.pass_number).values(status=PassState.BLOCKED))
    again = counter.pay(**form)
    assert again.status_code == 303 and again.headers["Location"] == first.headers["Location"]
    assert "Afgeschreven: <strong>€ 12,50" in counter.client.get(again.headers["Location"]).get_data(as_text=True)
    assert _redemptions(counter.db) == 1
    # The same form with another amount is not the same payment.
    other = counter.pay_and_follow(**{**form, "amount": "13,00"})
    assert "al voor een ander bedrag gebruikt" in other.get_data(as_text=True) and _redemptions(counter.db) == 1


def test_a_paid_form_sent_again_past_the_unusable_pass_limit_shows_its_receipt(counter):  # type: ignore[no-untyped-def]
    form = {"pass_number": counter.pass_number, "budget_id": str(counter.budget_id), "amount": "12,50",
            "idempotency_key": "form-paid"}
    first = counter.pay(**form)
    assert first.status_code == 303 and "/counter/bon/" in first.headers["Location"]
    for n in range(UNKNOWN_LIMIT):
        counter.scan(f"64009999999999{n:02d}")
    # The cashier's reload of the payment whose answer got lost: not "niets afgeschreven", it was paid.
    again = counter.pay(**form)
    assert again.status_code == 303 and again.headers["Location"] == first.headers["Location"]
    assert _redemptions(counter.db) == 1
    # A form not paid before is still refused by the limit.
    new = counter.pay(**{**form, "idempotency_key": "form-new"})
    assert new.status_code == 429 and _redemptions(counter.db) == 1


# ---------------------------------------------------------------- 4. only ASCII digits are numbers

@pytest.mark.parametrize("budget_id", ["²", "١٢", "１", "12 ", "-1", "9" * 19])
def test_a_budget_number_that_is_not_ascii_digits_is_a_dutch_400(counter, budget_id):  # type: ignore[no-untyped-def]
    response = counter.pay(pass_number=counter.pass_number, budget_id=budget_id)
    page = response.get_data(as_text=True)
    assert response.status_code == 400 and "Er is niets afgeschreven" in page and "Sanne" not in page
    assert _redemptions(counter.db) == 0


@pytest.mark.parametrize("amount", ["١٢,٥٠", "１２", "12,5٠"])
def test_amounts_in_other_scripts_are_not_amounts(counter, amount):  # type: ignore[no-untyped-def]
    response = counter.pay_and_follow(pass_number=counter.pass_number, budget_id=str(counter.budget_id), amount=amount)
    assert "Vul een bedrag in euro" in response.get_data(as_text=True)
    assert _redemptions(counter.db) == 0


def test_a_receipt_link_with_odd_digits_still_shows(counter):  # type: ignore[no-untyped-def]
    paid = counter.pay(pass_number=counter.pass_number, budget_id=str(counter.budget_id))
    location = paid.headers["Location"].split("?")[0]
    response = counter.client.get(location + "?zelf=²")
    assert response.status_code == 200 and "Klant betaalt zelf" not in response.get_data(as_text=True)


@pytest.mark.parametrize("path, fields", [("/counter/aanmelden", {"api_key": "spk_wrong"}),
                                          ("/admin/aanmelden", {"name": "beheerder", "password": "fout"})])
def test_failed_sign_ins_are_counted_by_the_apps_limiter(counter, path, fields):  # type: ignore[no-untyped-def]
    # So Redis holds them too when configured; the pinned clock shows which limiter counted.
    client = counter.app.test_client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).get_data(as_text=True)).group(1)
    statuses = [client.post(path, data={"csrf_token": token, **fields}).status_code for _ in range(6)]
    assert statuses == [401] * 5 + [429]
    counter.limiter.clock = lambda: PINNED + 60  # the next minute
    assert client.post(path, data={"csrf_token": token, **fields}).status_code == 401


# ---------------------------------------------------------------- 5. a budget's last day is its last day

def test_the_counter_page_spends_a_budget_through_its_grace_and_refuses_it_after(counter, vault):  # type: ignore[no-untyped-def]
    """config/budgets.yaml grants 14 days after a period's end; the roll-over has not closed either budget. The
    signed-in shop redeems school budgets, which both are."""
    today = local_day(utcnow())
    children = [factories.child_with_budget(counter.db, vault, amount_cents=5_000,
                                            period=(today - timedelta(days=200), today - timedelta(days=ended)))
                for ended in (14, 15)]
    with counter.db.write() as session:  # the passes run on into the next period
        session.execute(update(Pass).where(Pass.id.in_([child.pass_id for child in children]))
                        .values(valid_until=today + timedelta(days=100)))
    in_grace, past_it = children
    paid = counter.pay(pass_number=in_grace.pass_number, budget_id=str(in_grace.budget_id), idempotency_key="late-1")
    assert paid.status_code == 303 and "/counter/bon/" in paid.headers["Location"]
    refused = counter.pay(pass_number=past_it.pass_number, budget_id=str(past_it.budget_id), idempotency_key="late-2")
    assert refused.status_code == 303 and refused.headers["Location"] == "/counter/"
    assert "Er is niets afgeschreven" in counter.client.get("/counter/").get_data(as_text=True)
    with counter.db.read() as session:
        assert [session.get(Budget, child.budget_id).balance_cents for child in children] == [4_500, 5_000]


def test_a_reversal_on_the_counter_page_after_the_budgets_last_day_says_the_money_goes_to_the_municipality(
        counter, vault):  # type: ignore[no-untyped-def]
    """The roll-over has not closed the budget yet, but its last day is over: the money cannot go back on it."""
    from adapter.models import Redemption

    today = local_day(utcnow())
    child = factories.child_with_budget(counter.db, vault, amount_cents=5_000,
                                        period=(today - timedelta(days=200), today - timedelta(days=14)))
    with counter.db.write() as session:  # the pass runs on into the next period
        session.execute(update(Pass).where(Pass.id == child.pass_id).values(valid_until=today + timedelta(days=100)))
    assert counter.pay(pass_number=child.pass_number, budget_id=str(child.budget_id),
                       idempotency_key="last-day").status_code == 303
    with counter.db.write() as session:  # the day after its last day, before the night's roll-over
        session.execute(update(Budget).where(Budget.id == child.budget_id)
                        .values(period_end=today - timedelta(days=15)))
        redemption_id = session.execute(select(Redemption.id)).scalar_one()
    sent = counter.client.post("/counter/terugboeken", data={
        "csrf_token": counter.token(), "redemption_id": redemption_id, "reason": "retour",
        "idempotency_key": "late-reversal"})
    assert sent.status_code == 303
    page = counter.client.get(sent.headers["Location"]).get_data(as_text=True)
    assert "het geld gaat terug naar de gemeente" in page
    with counter.db.read() as session:
        assert session.get(Budget, child.budget_id).balance_cents == 4_500


def test_a_reversal_sent_twice_at_once_says_in_dutch_to_wait_instead_of_failing(counter, monkeypatch):  # type: ignore[no-untyped-def]
    """On PostgreSQL the second of two identical forms waits for the first and then gives up with
    IdempotencyInProgress (adapter.key_record, raced in tests/core/test_key_record.py); here it is raised where it
    would come."""
    from adapter import ledger

    def still_running(*_args, **_kwargs):  # type: ignore[no-untyped-def]
        raise ledger.IdempotencyInProgress("the first form is still being written")

    monkeypatch.setattr(ledger, "reverse", still_running)
    sent = counter.client.post("/counter/terugboeken", data={
        "csrf_token": counter.token(), "redemption_id": "00000000-0000-0000-0000-000000000000",
        "reason": "kapotte schrift", "idempotency_key": "twice"})
    assert sent.status_code == 303
    page = counter.client.get(sent.headers["Location"]).get_data(as_text=True)
    assert "Deze terugboeking wordt nog verwerkt" in page


def test_a_reversal_refused_as_too_much_says_how_much_can_still_go_back_or_that_all_went_back(counter):  # type: ignore[no-untyped-def]
    """Two tills of a shop, or a list left open in a second tab: the payment was wholly reversed there, and this
    till's form (amount left empty: 'all') is sent too. It must hear that it was all given back already, as the API
    says (ad883ec), not that it asked for more than can go back. Too much typed names what still can."""
    paid = counter.pay(pass_number=counter.pass_number, budget_id=str(counter.budget_id), amount="20,00",
                       idempotency_key="pay-twice-reversed")
    redemption_id = paid.headers["Location"].split("/bon/")[1].split("?")[0]

    def reverse(amount: str, key: str) -> str:
        sent = counter.client.post("/counter/terugboeken", data={
            "csrf_token": counter.token(), "redemption_id": redemption_id, "reason": "retour", "amount": amount,
            "idempotency_key": key})
        assert sent.status_code == 303
        return counter.client.get(sent.headers["Location"]).get_data(as_text=True)

    assert "Teruggeboekt: € 5,00" in reverse("5", "till-1")
    too_much = reverse("16", "till-2")
    assert "Van deze betaling kan nog € 15,00 terug" in too_much and "Er is niets teruggeboekt" in too_much
    assert "Teruggeboekt: € 15,00" in reverse("", "till-3")
    again = reverse("", "till-4")
    assert "al helemaal teruggeboekt" in again and "meer dan" not in again
    with counter.db.read() as session:
        assert session.get(Budget, counter.budget_id).balance_cents == 10_000


def test_the_counter_page_judges_by_amsterdams_day_not_the_servers(counter, vault, monkeypatch):  # type: ignore[no-untyped-def]
    """At 23:30 UTC on 31 December it is already 1 January in Amsterdam: a budget whose last day was 31 December
    is no longer spent, whatever zone the server's clock is in."""
    from datetime import datetime, timezone

    from adapter import counter as counter_core

    assert local_day(datetime(2026, 12, 31, 23, 30, tzinfo=timezone.utc)) == date(2027, 1, 1)
    real_today = local_day(utcnow())
    # Two days on from the machine's own date: a handler that asked the machine's date would still spend it.
    monkeypatch.setattr(counter_core, "utcnow", lambda: datetime.combine(
        real_today + timedelta(days=2), datetime.min.time(), tzinfo=timezone.utc) + timedelta(hours=12))
    child = factories.child_with_budget(counter.db, vault, amount_cents=5_000,
                                        period=(real_today - timedelta(days=200), real_today - timedelta(days=13)))
    with counter.db.write() as session:
        session.execute(update(Pass).where(Pass.id == child.pass_id).values(valid_until=real_today + timedelta(days=9)))
    refused = counter.pay(pass_number=child.pass_number, budget_id=str(child.budget_id), idempotency_key="late-3")
    assert refused.status_code == 303 and refused.headers["Location"] == "/counter/"
    with counter.db.read() as session:
        assert session.get(Budget, child.budget_id).balance_cents == 5_000


def _budget_beside(db, child, *, category: str, code: str, ends: date) -> int:  # type: ignore[no-untyped-def]
    """Another budget of the same child (a rule of its own), granted 20 euros."""
    from adapter import ledger

    with db.write() as session:
        budget = Budget(cardholder_id=child.cardholder_id, rule_code=code, rule_name=f"Regel {code}",
                        category=category, period_key="2026", period_start=date(2026, 1, 1), period_end=ends,
                        granted_cents=0, balance_cents=0)
        session.add(budget)
        session.flush()
        ledger.grant(session, budget.id, 2_000, actor="test")
        return budget.id


def _focused(page: str) -> list[str]:
    return re.findall(r'id="(amount-\d+)"[^>]*autofocus', page)


def test_exactly_one_amount_field_has_focus_the_first_this_shop_may_use_or_the_one_with_the_error(counter, vault):  # type: ignore[no-untyped-def]
    """A scanner's cashier types the amount at once: not no field (the first budget was another shop's), not two."""
    year = local_day(utcnow()).year
    child = factories.child_with_budget(counter.db, vault, amount_cents=5_000, category="sport",
                                        period=(date(year, 1, 1), date(year, 12, 31)))
    first = _budget_beside(counter.db, child, category="school", code="a", ends=date(year, 12, 31))
    second = _budget_beside(counter.db, child, category="school", code="b", ends=date(year, 12, 31))
    page = counter.scan(child.pass_number).get_data(as_text=True)
    assert "Schoolspullen" not in page and "50,00" not in page  # the sport budget (5,000 cents) is not shown
    assert _focused(page) == [f"amount-{first}"]
    wrong = counter.pay_and_follow(pass_number=child.pass_number, budget_id=str(second), amount="abc",
                                   idempotency_key="f-1")
    assert _focused(wrong.get_data(as_text=True)) == [f"amount-{second}"]


def test_a_spent_budget_shows_that_it_is_spent_and_no_amount_field(counter):  # type: ignore[no-untyped-def]
    """A budget at € 0,00 offered an amount field and a pay button, with the focus in it: the cashier typed the
    price and learned only then that there was nothing to pay with."""
    paid = counter.pay(pass_number=counter.pass_number, budget_id=str(counter.budget_id), amount="100,00",
                       idempotency_key="all-of-it")
    assert paid.status_code == 303 and "/counter/bon/" in paid.headers["Location"]
    page = counter.scan(counter.pass_number).get_data(as_text=True)
    assert "Dit tegoed is op" in page
    assert f'id="amount-{counter.budget_id}"' not in page
    assert 'id="pass_number"' in page and re.search(r'id="pass_number"[^>]*autofocus', page, re.S)


def test_each_counter_page_says_in_its_title_what_it_is_and_never_whose_pass(counter):  # type: ignore[no-untyped-def]
    """The title is what a screen reader says first and what a tab shows; every page said 'Kassa'."""
    def title(answer) -> str:  # type: ignore[no-untyped-def]
        return re.search(r"<title>(.*?)</title>", answer.get_data(as_text=True), re.S).group(1)

    assert title(counter.client.get("/counter/")).startswith("Pas scannen")
    balance = counter.scan(counter.pass_number)
    assert title(balance).startswith("Saldo") and counter.pass_number not in title(balance)
    paid = counter.pay(pass_number=counter.pass_number, budget_id=str(counter.budget_id), amount="1,00")
    assert title(counter.client.get(paid.headers["Location"])).startswith("Betaald")


def _counted_hits(counter, monkeypatch) -> list[str]:  # type: ignore[no-untyped-def]
    """The buckets the counter's limiter counts a hit in, from now on."""
    hit = counter.limiter.hit
    counted: list[str] = []

    def counting(bucket, limit, window):  # type: ignore[no-untyped-def]
        counted.append(bucket)
        return hit(bucket, limit, window)

    monkeypatch.setattr(counter.limiter, "hit", counting)
    return counted


def test_a_scan_counts_one_balance_check_however_often_its_page_is_shown_again(counter, monkeypatch):  # type: ignore[no-untyped-def]
    """Each look-up of the balance page counted: the scan's redirect, a payment refused for too little balance
    (which shows the page again) and every Back or reload each spent another of the shop's checks per minute."""
    counted = _counted_hits(counter, monkeypatch)
    scanned = counter.client.post("/counter/pas", data={"csrf_token": counter.token(),
                                                       "pass_number": counter.pass_number})
    for _reload in range(3):
        assert "Tegoed" in counter.client.get(scanned.headers["Location"]).get_data(as_text=True)
    short = counter.pay_and_follow(pass_number=counter.pass_number, budget_id=str(counter.budget_id),
                                   amount="500,00", idempotency_key="short-1")
    assert "Te weinig tegoed" in short.get_data(as_text=True)
    assert [bucket for bucket in counted if bucket.startswith("balance-checks:")] == ["balance-checks:merchant:" +
                                                                                    counted[0].rsplit(":", 1)[1]]


def test_a_pass_number_in_a_payment_form_this_session_did_not_scan_counts_a_balance_check(counter, monkeypatch):  # type: ignore[no-untyped-def]
    """A refused payment shows the balance page of the form's pass number, which the browser sends: counted only
    at the scan, a form with any pass number and a bad amount showed that pass's balance uncounted, as often as
    wanted, past the shop's limit."""
    counted = _counted_hits(counter, monkeypatch)
    for attempt in range(3):
        shown = counter.pay_and_follow(pass_number=counter.other_pass_number, budget_id=str(counter.other_budget_id),
                                       amount="x", idempotency_key=f"bad-{attempt}")
        assert shown.status_code == 200
    # The first showed a pass this session had not looked up; the two after it one it had.
    assert len([bucket for bucket in counted if bucket.startswith("balance-checks:")]) == 1
    counter.pay_and_follow(pass_number=counter.pass_number, budget_id=str(counter.budget_id), amount="x",
                           idempotency_key="bad-other")
    assert len([bucket for bucket in counted if bucket.startswith("balance-checks:")]) == 2
