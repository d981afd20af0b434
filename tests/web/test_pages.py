"""The web shell without a browser: headers, cookie flags, CSRF, sign-in throttling, no pass numbers in URLs."""

from __future__ import annotations

import re

import pytest

from adapter.web.security import CONTENT_SECURITY_POLICY


def _csrf(response) -> str:  # type: ignore[no-untyped-def]
    return re.search(r'name="csrf_token" value="([^"]+)"', response.get_data(as_text=True)).group(1)


@pytest.fixture
def client(web_app):  # type: ignore[no-untyped-def]
    return web_app.test_client()


def _signed_in(client, web_world):  # type: ignore[no-untyped-def]
    token = _csrf(client.get("/counter/aanmelden"))
    response = client.post("/counter/aanmelden", data={"csrf_token": token, "api_key": web_world.api_key})
    assert response.status_code == 303
    return response


@pytest.mark.parametrize("path", ["/counter/aanmelden", "/admin/aanmelden", "/web-static/web.css"])
def test_security_headers_on_every_web_page(client, path):  # type: ignore[no-untyped-def]
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY and "unsafe-inline" not in CONTENT_SECURITY_POLICY
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Frame-Options"] == "DENY"


def test_pages_carry_no_script_and_nothing_from_elsewhere(client, web_world):  # type: ignore[no-untyped-def]
    _signed_in(client, web_world)
    page = client.get("/counter/").get_data(as_text=True)
    assert "<script" not in page and "http://" not in page and "https://" not in page
    assert 'method="post" action="/counter/pas"' in page and "autofocus" in page


def test_session_cookie_is_httponly_samesite_and_secure_over_https(client, web_world):  # type: ignore[no-untyped-def]
    cookie = _signed_in(client, web_world).headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    https = client.get("/counter/aanmelden", base_url="https://localhost")
    token = _csrf(https)
    secure = client.post("/counter/aanmelden", base_url="https://localhost",
                         data={"csrf_token": token, "api_key": web_world.api_key})
    assert "Secure" in secure.headers["Set-Cookie"]
    # Over HTTPS the browser is told to stay on it; over plain HTTP nothing is said (it would be ignored).
    assert https.headers["Strict-Transport-Security"] == "max-age=31536000"
    assert "Strict-Transport-Security" not in client.get("/counter/aanmelden").headers


def test_forms_without_the_csrf_token_are_refused(client, web_world):  # type: ignore[no-untyped-def]
    client.get("/counter/aanmelden")
    response = client.post("/counter/aanmelden", data={"api_key": web_world.api_key})
    assert response.status_code == 400 and "Formulier verlopen" in response.get_data(as_text=True)
    _signed_in(client, web_world)
    forged = client.post("/counter/pas", data={"csrf_token": "forged", "pass_number": web_world.pass_number})
    assert forged.status_code == 400


@pytest.mark.parametrize("forged", ["é", "tökén", "\u200b"])
def test_a_forged_token_with_letters_outside_ascii_is_refused_as_an_expired_form(client, web_world, forged):  # type: ignore[no-untyped-def]
    """hmac.compare_digest refuses str with non-ASCII letters by raising TypeError: such a token was a 500 with a
    traceback in the log, for a request that is simply not from our form."""
    _signed_in(client, web_world)
    response = client.post("/counter/pas", data={"csrf_token": forged, "pass_number": web_world.pass_number})
    assert response.status_code == 400 and "Formulier verlopen" in response.get_data(as_text=True)


@pytest.fixture
def postgres_web_app(postgres_url, tmp_path):  # type: ignore[no-untyped-def]
    from adapter.api import create_app
    from tests.conftest import make_settings

    return create_app(settings=make_settings(tmp_path, postgres_url))


@pytest.mark.postgres
def test_a_nul_byte_in_a_form_or_address_is_a_dutch_400_not_a_500(postgres_web_app, vault, caplog):  # type: ignore[no-untyped-def]
    """PostgreSQL refuses text holding a NUL byte even in a comparison: every text field the pages send to the
    database (a payment's or reversal's form key, the reversal's payment and reason, a receipt's address, the
    dashboard's sign-in name) answered 500, for a payment form with 'look whether it was paid'. No form of ours
    sends one: the pages refuse it, as the API does, before anything is looked up."""
    from adapter.models import Budget
    from tests import factories

    db = postgres_web_app.extensions["adapter_runtime"].db
    child = factories.child_with_budget(db, vault, amount_cents=10_000)
    shop = factories.merchant(db, "Boekhandel De Pen", ("school",))
    counter, admin = postgres_web_app.test_client(), postgres_web_app.test_client()
    token = _csrf(counter.get("/counter/aanmelden"))
    assert counter.post("/counter/aanmelden", data={"csrf_token": token, "api_key": shop.api_key}).status_code == 303
    token = _csrf(counter.get("/counter/"))
    payment = {"csrf_token": token, "pass_number": child.pass_number, "budget_id": str(child.budget_id),
               "amount": "5,00"}
    paid = counter.post("/counter/afrekenen", data={**payment, "idempotency_key": "form-1"})
    assert paid.status_code == 303  # the same form without a NUL byte works
    redemption_id = paid.headers["Location"].split("/bon/")[1].split("?")[0]
    answers = [
        counter.post("/counter/afrekenen", data={**payment, "idempotency_key": "form\x001"}),
        counter.post("/counter/terugboeken", data={"csrf_token": token, "redemption_id": "x\x00", "reason": "fout"}),
        counter.post("/counter/terugboeken", data={"csrf_token": token, "redemption_id": redemption_id,
                                                   "reason": "fo\x00ut", "idempotency_key": "reverse-1"}),
        counter.get("/counter/bon/x%00y"),
    ]
    admin_token = _csrf(admin.get("/admin/aanmelden"))
    answers.append(admin.post("/admin/aanmelden", data={"csrf_token": admin_token, "name": "beheer\x00der",
                                                        "password": "x"}))
    for answer in answers:
        page = answer.get_data(as_text=True)
        assert answer.status_code == 400 and answer.mimetype == "text/html", (answer.request.path, answer.status_code)
        assert "teken dat hier niet kan" in page and "Er is niets verwerkt" in page
        assert answer.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "unhandled error" not in caplog.text
    with db.read() as session:
        assert session.get(Budget, child.budget_id).balance_cents == 9_500  # the one payment, nothing reversed


def test_failed_sign_ins_are_rate_limited_per_client(client, web_world):  # type: ignore[no-untyped-def]
    # A pinned clock: the whole test falls in one minute window, however slow the machine is.
    client.application.extensions["adapter_limiter"].clock = lambda: 1_800_000_000.0
    token = _csrf(client.get("/counter/aanmelden"))
    statuses = [client.post("/counter/aanmelden", data={"csrf_token": token, "api_key": "spk_wrong"}).status_code
                for _ in range(6)]
    assert statuses == [401] * 5 + [429]
    # Even the right key waits until the window is over: guessing gains nothing.
    right = client.post("/counter/aanmelden", data={"csrf_token": token, "api_key": web_world.api_key})
    assert right.status_code == 429
    other_client = client.post("/counter/aanmelden", data={"csrf_token": token, "api_key": web_world.api_key},
                               environ_base={"REMOTE_ADDR": "127.0.0.2"})
    assert other_client.status_code == 303


def test_unknown_pass_gets_a_dutch_answer_and_pages_need_sign_in(client, web_world):  # type: ignore[no-untyped-def]
    assert client.get("/counter/").status_code == 303
    assert client.get("/admin/").status_code == 303
    _signed_in(client, web_world)
    token = _csrf(client.get("/counter/"))
    page = client.post("/counter/pas", data={"csrf_token": token, "pass_number": "6400999999999999"},
                       follow_redirects=True)
    assert "kan niet worden gebruikt" in page.get_data(as_text=True)


def test_a_scan_is_a_redirect_to_a_balance_page_whose_address_and_cookie_hold_no_pass_number(  # type: ignore[no-untyped-def]
        client, web_world):
    _signed_in(client, web_world)
    token = _csrf(client.get("/counter/"))
    scanned = client.post("/counter/pas", data={"csrf_token": token, "pass_number": web_world.pass_number})
    assert scanned.status_code == 303
    address = scanned.headers["Location"]
    assert address.startswith("/counter/pas/") and web_world.pass_number not in address
    assert web_world.pass_number not in scanned.headers["Set-Cookie"]
    with client.session_transaction() as cookie_session:
        assert web_world.pass_number not in repr(dict(cookie_session))
    for _ in range(2):  # a reload looks it up again
        page = client.get(address)
        assert page.status_code == 200 and "Sanne" in page.get_data(as_text=True)
    # Another browser (or a sign-in since) does not know this look-up: a Dutch page says what to do.
    other = client.application.test_client()
    _signed_in(other, web_world)
    gone = other.get(address)
    assert gone.status_code == 404 and "Scan de pas opnieuw" in gone.get_data(as_text=True)
    assert "Sanne" not in gone.get_data(as_text=True)


def test_amounts_are_parsed_without_floats():  # type: ignore[no-untyped-def]
    from adapter.money import AmountError, parse_euros

    assert [parse_euros(text) for text in ("12,50", "12.5", "€ 0,07", "1000", "0.1")] == [1250, 1250, 7, 100_000, 10]
    for bad in ("", "12,505", "1.250,00", "-5", "0", "abc", "12,-5", "12.-", ",-"):
        with pytest.raises(AmountError):
            parse_euros(bad)


def test_whole_euros_as_a_price_tag_writes_them_and_a_thousands_separator_is_named():  # type: ignore[no-untyped-def]
    """A cashier types what the tag says: "12,-" is twelve euros. "1.250,00" cannot be read safely ("1.250" is
    1,25 to some and 1250 to others): the message says to leave the separator out, not just "type an amount"."""
    from adapter.money import AmountError, parse_euros

    assert [parse_euros(text) for text in ("12,-", "€ 12,--", "7,-")] == [1200, 1200, 700]
    for grouped in ("1.250,00", "1,250.00", "1.250", "€ 12.500"):
        with pytest.raises(AmountError, match="zonder punt of komma voor de duizendtallen"):
            parse_euros(grouped)


def _admin_signed_in(client, web_world):  # type: ignore[no-untyped-def]
    token = _csrf(client.get("/admin/aanmelden"))
    response = client.post("/admin/aanmelden", data={"csrf_token": token, "name": web_world.admin_name,
                                                     "password": web_world.admin_password})
    assert response.status_code == 303
    return response


@pytest.mark.parametrize("area, sign_in, page", [("counter", _signed_in, "/counter/"),
                                                 ("admin", _admin_signed_in, "/admin/")])
def test_a_copy_of_the_cookie_lets_nobody_in_after_signing_out(web_app, web_world, area, sign_in, page):  # type: ignore[no-untyped-def]
    """A cookie copied before signing out (a shared till, a proxy's log) is refused afterwards: the server ended
    the sign-in, not only the browser its cookie."""
    mine, copy = web_app.test_client(), web_app.test_client()
    sign_in(mine, web_world)
    copy.set_cookie("stadspas_session", mine.get_cookie("stadspas_session").value)
    assert copy.get(page).status_code == 200  # the copy works while the sign-in lasts (the test can fail)
    signed_out = mine.post(f"/{area}/afmelden", data={"csrf_token": _csrf(mine.get(page))})
    assert signed_out.status_code == 303
    assert copy.get(page).status_code == 303 and "aanmelden" in copy.get(page).headers["Location"]


@pytest.mark.parametrize("first, then", [(_signed_in, _signed_in), (_admin_signed_in, _signed_in),
                                         (_signed_in, _admin_signed_in)])
def test_signing_in_again_in_the_same_browser_then_out_ends_the_earlier_sign_in_on_the_server_too(
        web_app, web_world, first, then):  # type: ignore[no-untyped-def]
    """A sign-in replaces the cookie (no fixation), dropping the sign-in it held, and signing out clears the whole
    cookie: the counter and the dashboard share it. Each dropped sign-in must end on the server as well, or a copy of
    the earlier cookie goes on working for the rest of its twelve hours after the person signed out."""
    mine, copy = web_app.test_client(), web_app.test_client()
    first(mine, web_world)
    earlier_page = "/counter/" if first is _signed_in else "/admin/"
    copy.set_cookie("stadspas_session", mine.get_cookie("stadspas_session").value)
    assert copy.get(earlier_page).status_code == 200  # the copy works while the sign-in lasts (the test can fail)
    then(mine, web_world)
    later_page = "/counter/" if then is _signed_in else "/admin/"
    area = later_page.strip("/")
    assert mine.post(f"/{area}/afmelden", data={"csrf_token": _csrf(mine.get(later_page))}).status_code == 303
    refused = copy.get(earlier_page)
    assert refused.status_code == 303 and "aanmelden" in refused.headers["Location"]


def test_a_sign_in_lasts_twelve_hours_from_signing_in_however_often_it_is_used(web_app, web_world, monkeypatch):  # type: ignore[no-untyped-def]
    from datetime import timedelta

    from adapter import web_sessions
    from adapter.models import utcnow

    client = web_app.test_client()
    started = utcnow()
    monkeypatch.setattr(web_sessions, "utcnow", lambda: started)
    _signed_in(client, web_world)
    for hours in (1, 6, 11.9):  # used all day long
        monkeypatch.setattr(web_sessions, "utcnow", lambda hours=hours: started + timedelta(hours=hours))
        assert client.get("/counter/").status_code == 200, hours
    monkeypatch.setattr(web_sessions, "utcnow", lambda: started + timedelta(hours=12, minutes=1))
    assert client.get("/counter/").status_code == 303
    assert web_app.config["SESSION_REFRESH_EACH_REQUEST"] is False  # nor does the cookie's own expiry move on


def test_a_disabled_admin_is_refused_at_the_next_page_and_cannot_sign_in_again(web_app, web_world, tmp_path):  # type: ignore[no-untyped-def]
    import yaml
    from click.testing import CliRunner
    from sqlalchemy import select

    from adapter.audit import AuditEntry
    from adapter.cli import cli

    client = web_app.test_client()
    _admin_signed_in(client, web_world)
    assert client.get("/admin/").status_code == 200
    config = tmp_path / "cli.yaml"
    config.write_text(yaml.safe_dump({"environment": "development", "data_dir": str(tmp_path / "var"),
                                      "database": {"url": web_world.db.url}}))
    result = CliRunner().invoke(cli, ["--config", str(config), "admins", "disable", web_world.admin_name])
    assert result.exit_code == 0 and "disabled" in result.output, result.output
    assert client.get("/admin/").status_code == 303
    token = _csrf(client.get("/admin/aanmelden"))
    again = client.post("/admin/aanmelden", data={"csrf_token": token, "name": web_world.admin_name,
                                                  "password": web_world.admin_password})
    assert again.status_code == 401
    unknown = CliRunner().invoke(cli, ["--config", str(config), "admins", "disable", "nobody"])
    assert unknown.exit_code == 1 and "no admin named 'nobody'" in unknown.output
    with web_world.db.read() as session:
        assert "admin.disabled" in session.execute(select(AuditEntry.action)).scalars().all()


def test_behind_a_trusted_load_balancer_failed_sign_ins_count_per_client_and_https_gets_a_secure_cookie(
        sqlite_url, tmp_path, web_world):  # type: ignore[no-untyped-def]
    """Every request comes from the balancer's address: counted by it, one client's wrong keys locked every shop
    out. With api.trusted_proxies: 1 the balancer's X-Forwarded-For names the client; without it the header is
    not believed (a client cannot pick its own address)."""
    from adapter.api import create_app
    from tests.conftest import make_settings

    def app_with(trusted: int):  # type: ignore[no-untyped-def]
        app = create_app(settings=make_settings(tmp_path, sqlite_url, api={"trusted_proxies": trusted}))
        app.extensions["adapter_limiter"].clock = lambda: 1_800_000_000.0 + 120 * trusted  # a window of its own
        return app.test_client()

    balancer = {"REMOTE_ADDR": "10.0.0.1"}
    for trusted in (1, 0):
        client = app_with(trusted)
        token = _csrf(client.get("/counter/aanmelden", environ_base=balancer))
        for _ in range(5):
            wrong = client.post("/counter/aanmelden", data={"csrf_token": token, "api_key": "spk_wrong"},
                                environ_base=balancer, headers={"X-Forwarded-For": "203.0.113.9"})
            assert wrong.status_code == 401
        shop = client.post("/counter/aanmelden", data={"csrf_token": token, "api_key": web_world.api_key},
                           environ_base=balancer, headers={"X-Forwarded-For": "198.51.100.7",
                                                           "X-Forwarded-Proto": "https"})
        if trusted:
            assert shop.status_code == 303, "another client behind the same balancer signs in"
            assert "Secure" in shop.headers["Set-Cookie"]
        else:
            assert shop.status_code == 429, "an untrusted X-Forwarded-For changes nothing"


def test_a_payment_after_the_sign_in_ended_says_nothing_was_paid(web_app, web_world, monkeypatch):  # type: ignore[no-untyped-def]
    from datetime import timedelta

    from adapter import web_sessions
    from adapter.models import utcnow

    client = web_app.test_client()
    _signed_in(client, web_world)
    token = _csrf(client.get("/counter/"))
    later = utcnow() + timedelta(hours=13)
    monkeypatch.setattr(web_sessions, "utcnow", lambda: later)
    paid = client.post("/counter/afrekenen", data={"csrf_token": token, "pass_number": web_world.pass_number,
                                                   "budget_id": str(web_world.budget_id), "amount": "5,00",
                                                   "idempotency_key": "late"})
    assert paid.status_code == 303 and "aanmelden" in paid.headers["Location"]
    page = client.get(paid.headers["Location"]).get_data(as_text=True)
    assert "Er is niets afgeschreven" in page and "meld u opnieuw aan" in page


@pytest.mark.parametrize("method, path, status, heading", [("GET", "/counter/nope", 404, "Deze pagina bestaat niet"),
                                                           ("GET", "/counter/pas", 405, "Dit kan zo niet"),
                                                           ("GET", "/admin/nope", 404, "Deze pagina bestaat niet")])
def test_a_wrong_address_under_the_pages_is_a_dutch_page_not_the_apis_json(client, method, path, status, heading):  # type: ignore[no-untyped-def]
    answer = client.open(path, method=method)
    assert answer.status_code == status and answer.mimetype == "text/html"
    page = answer.get_data(as_text=True)
    assert heading in page and "Er is niets verwerkt" in page and "openapi" not in page
    assert answer.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert client.get("/v1/nope").mimetype == "application/problem+json"  # the API answers as before


def test_a_report_download_is_not_kept_in_the_browsers_cache(web_app, web_world):  # type: ignore[no-untyped-def]
    """A dashboard's CSV holds the municipality's figures: on a shared office computer it must not stay in the
    browser's cache, as the pages do not. The page's own style sheet may."""
    client = web_app.test_client()
    _admin_signed_in(client, web_world)
    download = client.get("/admin/csv/sync-runs.csv")
    assert download.status_code == 200 and download.mimetype == "text/csv"
    assert download.headers["Cache-Control"] == "no-store"
    assert client.get("/admin/").headers["Cache-Control"] == "no-store"


def _fails_with(error):  # type: ignore[no-untyped-def]
    def failing(*_args, **_kwargs):  # type: ignore[no-untyped-def]
        raise error
    return failing


def test_a_database_that_does_not_answer_is_a_dutch_page_that_does_not_say_nothing_was_paid(
        client, web_world, monkeypatch):  # type: ignore[no-untyped-def]
    """The cashier's browser showed the API's JSON. The page says to try again, not that nothing was paid (a payment
    whose commit was under way may have gone through: see the test after the next)."""
    from sqlalchemy.exc import OperationalError

    from adapter.web import counter

    _signed_in(client, web_world)
    monkeypatch.setattr(counter, "_todays_redemptions",
                        _fails_with(OperationalError("SELECT", {}, Exception("server closed the connection"))))
    page = client.get("/counter/")
    assert page.status_code == 503 and page.mimetype == "text/html" and page.headers["Retry-After"] == "30"
    text = page.get_data(as_text=True)
    assert "Even niet beschikbaar" in text and "over een minuut opnieuw" in text and "niets verwerkt" not in text
    assert page.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY


def test_a_fault_of_ours_in_a_page_is_a_dutch_page_without_its_text(web_app, web_world, monkeypatch, caplog):  # type: ignore[no-untyped-def]
    from adapter.web import admin

    client = web_app.test_client()
    _admin_signed_in(client, web_world)
    monkeypatch.setattr(admin, "_tables", _fails_with(RuntimeError("kapot bij Sanne 999993653")))
    page = client.get("/admin/")
    assert page.status_code == 500 and page.mimetype == "text/html"
    text = page.get_data(as_text=True)
    assert "Er ging bij ons iets mis" in text and "Sanne" not in text and "999993653" not in text
    assert "unhandled error in a page" in caplog.text
    # The API keeps its problem documents.
    assert web_app.test_client().get("/v1/nergens").mimetype == "application/problem+json"


def test_a_payment_that_may_have_gone_through_says_to_look_before_paying_again(client, web_world, monkeypatch):  # type: ignore[no-untyped-def]
    """The database went away after the payment's commit: the page must not send the cashier back to scan the pass
    and pay with a fresh form (a new key: a second debit), promising that nothing is ever paid twice. It says to
    look under 'Betalingen vandaag' first."""
    from sqlalchemy.exc import OperationalError

    from adapter import counter as core_counter
    from adapter.models import Budget

    real_redeem = core_counter.redeem

    def committed_then_lost(*args, **kwargs):  # type: ignore[no-untyped-def]
        real_redeem(*args, **kwargs)
        raise OperationalError("COMMIT", {}, Exception("server closed the connection unexpectedly"))

    _signed_in(client, web_world)
    token = _csrf(client.get("/counter/"))
    monkeypatch.setattr(core_counter, "redeem", committed_then_lost)
    page = client.post("/counter/afrekenen", data={"csrf_token": token, "pass_number": web_world.pass_number,
                                                   "budget_id": str(web_world.budget_id), "amount": "5,00",
                                                   "idempotency_key": "form-1"})
    assert page.status_code == 503
    text = page.get_data(as_text=True)
    with web_world.db.read() as session:
        assert session.get(Budget, web_world.budget_id).balance_cents == 9_500  # it was paid
    assert "Betalingen vandaag" in text and "niets verwerkt" not in text and "nooit twee keer" not in text


def test_a_payment_form_sent_again_while_redis_is_away_does_not_say_nothing_was_paid(web_app, web_world):  # type: ignore[no-untyped-def]
    """The limits are judged before the form's key is looked at: a form sent again after its payment went through
    is refused while Redis is away, and 'Er is niets verwerkt' would tell the cashier it was never paid."""
    import redis

    from tests.api.live_server import free_port
    from tests.conftest import redis_limiter

    client = web_app.test_client()
    _signed_in(client, web_world)
    token = _csrf(client.get("/counter/"))
    form = {"csrf_token": token, "pass_number": web_world.pass_number, "budget_id": str(web_world.budget_id),
            "amount": "5,00", "idempotency_key": "form-1"}
    limiter = web_app.extensions["adapter_limiter"] = redis_limiter(clock=lambda: 1_000_000.0)
    assert client.post("/counter/afrekenen", data=form).status_code == 303  # paid
    limiter.client = redis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=2)  # gone
    again = client.post("/counter/afrekenen", data=form)
    assert again.status_code == 503
    text = again.get_data(as_text=True)
    assert "niets verwerkt" not in text and "Betalingen vandaag" in text


@pytest.mark.parametrize("period", ["9999", "0001", "0001..9999", "1899-12", "3000-01-01..3000-01-02"])
def test_a_period_outside_the_years_the_reports_hold_is_a_dutch_400_not_a_500(web_app, web_world, period):  # type: ignore[no-untyped-def]
    """Four digits read as a year, but 0001's and 9999's local midnights overflow a datetime."""
    client = web_app.test_client()
    _admin_signed_in(client, web_world)
    dashboard = client.get("/admin/", query_string={"periode": period})
    assert dashboard.status_code == 400 and "jaren van 1900 tot en met 2999" in dashboard.get_data(as_text=True)
    download = client.get("/admin/csv/uptake.csv", query_string={"periode": period})
    assert download.status_code == 400 and "jaren van 1900 tot en met 2999" in download.get_data(as_text=True)


def test_a_download_of_one_table_makes_that_table_alone(web_app, web_world, monkeypatch):  # type: ignore[no-untyped-def]
    """Every CSV download made all five tables, the uptake's opening of every child's sealed birth date included
    (seconds at a city's size), to hand over one of them."""
    from adapter import reports

    made: list[str] = []
    for name in ("uptake", "spending_by_category", "spending_by_merchant", "budget_totals", "budgets_by_status"):
        real = getattr(reports, name)
        monkeypatch.setattr(reports, name, lambda *args, _real=real, _name=name: made.append(_name) or _real(*args))
    client = web_app.test_client()
    _admin_signed_in(client, web_world)
    download = client.get("/admin/csv/budget-totals.csv", query_string={"periode": "2026"})
    assert download.status_code == 200 and download.get_data().startswith("\ufeffmaand;toegekend".encode())
    assert made == ["budget_totals"]
    assert client.get("/admin/csv/nope.csv").status_code == 404
    assert client.get("/admin/csv/uptake.csv").status_code == 200 and made[-1] == "uptake"


def test_a_nightly_sync_that_stopped_running_or_never_ran_is_named_on_the_dashboard(
        sqlite_url, tmp_path, web_world):  # type: ignore[no-untyped-def]
    """With the scheduler stopped (a reboot, a deployment that forgot it) the last run stayed green for days and a
    configured source that never ran did not appear at all: nothing told the officer new passes got no budget."""
    from datetime import timedelta

    from adapter.api import create_app
    from adapter.models import SyncRun, SyncStatus, utcnow
    from tests.conftest import DEMO_SOURCE, make_settings

    nightly = {**DEMO_SOURCE, "schedule": "04:15"}
    sources = {"oud": nightly, "nooit": nightly, "vers": nightly, "uit": {**nightly, "enabled": False},
               "handmatig": DEMO_SOURCE}
    with web_world.db.write() as session:
        session.add_all([
            SyncRun(source="oud", status=SyncStatus.SUCCEEDED, started_at=utcnow() - timedelta(days=3)),
            SyncRun(source="oud", status=SyncStatus.DRY_RUN, started_at=utcnow()),  # tried by hand: no night
            SyncRun(source="vers", status=SyncStatus.SUCCEEDED, started_at=utcnow() - timedelta(hours=5))])
    client = create_app(settings=make_settings(tmp_path, sqlite_url, sources=sources)).test_client()
    _admin_signed_in(client, web_world)
    page = client.get("/admin/").get_data(as_text=True)
    notices = re.findall(r'<p class="message error">(.*?)</p>', page, re.S)
    named = sorted(re.search(r"Bron <strong>(\w+)</strong>", notice).group(1) for notice in notices)
    assert named == ["nooit", "oud"]
    assert "is nog nooit\n    gesynchroniseerd" in page and "elke nacht om 04:15" in page
    assert "draait de planner" in page
