"""The per-worker key cache: fewer look-ups, and a disabled or expired key still stops working in time."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import event

from adapter import merchants
from adapter.models import MerchantKey, utcnow
from tests import factories

NOW = 1_800_000_000.0


def _pin(api, at: float) -> None:  # type: ignore[no-untyped-def]
    api.app.extensions["adapter_key_cache"].clock = lambda: at


def _key_lookups(api):  # type: ignore[no-untyped-def]
    seen: list[str] = []
    event.listen(api.db.engine, "before_cursor_execute",
                 lambda _c, _cur, statement, *_rest: seen.append(statement) if "merchant_keys" in statement else None)
    return seen


def test_a_known_key_is_looked_up_once_per_ttl(api):
    child, issued = api.child(), factories.merchant(api.db)
    _pin(api, NOW)
    lookups = _key_lookups(api)
    for _ in range(3):
        assert api.check(issued.api_key, child.pass_number).status_code == 200
    assert len(lookups) == 1
    _pin(api, NOW + 5)  # the default api.auth_cache_seconds
    assert api.check(issued.api_key, child.pass_number).status_code == 200
    assert len(lookups) == 2


def test_a_disabled_merchant_stops_working_within_the_ttl(api):
    child, issued = api.child(), factories.merchant(api.db)
    _pin(api, NOW)
    assert api.check(issued.api_key, child.pass_number).status_code == 200
    with api.db.write() as session:
        merchants.disable_merchant(session, issued.merchant_id)
    _pin(api, NOW + 4.9)
    assert api.check(issued.api_key, child.pass_number).status_code == 200  # the documented window
    _pin(api, NOW + 5)
    assert api.check(issued.api_key, child.pass_number).status_code == 401


def test_a_rotated_out_key_stops_at_its_expiry_even_when_cached(api):
    child, issued = api.child(), factories.merchant(api.db)
    expires_at = utcnow() + timedelta(seconds=2)
    with api.db.write() as session:
        session.query(MerchantKey).filter(MerchantKey.merchant_id == issued.merchant_id).update(
            {MerchantKey.expires_at: expires_at})
    _pin(api, expires_at.timestamp() - 1)
    assert api.check(issued.api_key, child.pass_number).status_code == 200
    _pin(api, expires_at.timestamp())  # within the TTL, but the key itself has expired
    assert api.check(issued.api_key, child.pass_number).status_code == 401


def test_an_unknown_key_is_never_cached(api):
    child = api.child()
    _pin(api, NOW)
    lookups = _key_lookups(api)
    for _ in range(2):
        assert api.check("spk_" + "y" * 43, child.pass_number).status_code == 401
    assert len(lookups) == 2
