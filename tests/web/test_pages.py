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


def test_forms_without_the_csrf_token_are_refused(client, web_world):  # type: ignore[no-untyped-def]
    client.get("/counter/aanmelden")
    response = client.post("/counter/aanmelden", data={"api_key": web_world.api_key})
    assert response.status_code == 400 and "Formulier verlopen" in response.get_data(as_text=True)
    _signed_in(client, web_world)
    forged = client.post("/counter/pas", data={"csrf_token": "forged", "pass_number": web_world.pass_number})
    assert forged.status_code == 400


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
    page = client.post("/counter/pas", data={"csrf_token": token, "pass_number": "6400999999999999"})
    assert "kan niet worden gebruikt" in page.get_data(as_text=True)


def test_amounts_are_parsed_without_floats():  # type: ignore[no-untyped-def]
    from adapter.money import AmountError, parse_euros

    assert [parse_euros(text) for text in ("12,50", "12.5", "€ 0,07", "1000", "0.1")] == [1250, 1250, 7, 100_000, 10]
    for bad in ("", "12,505", "1.250,00", "-5", "0", "abc"):
        with pytest.raises(AmountError):
            parse_euros(bad)
