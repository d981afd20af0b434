"""Merchant API keys: ``Authorization: Bearer <key>``; the merchant lands in ``g.merchant``.

A key that authenticated is remembered per worker for ``api.auth_cache_seconds``
(see ``adapter.api.key_cache``): a disabled or rotated-out key stops working within that time.
"""

from __future__ import annotations

from flask import Blueprint, current_app, g, request

from adapter import merchants
from adapter.api.key_cache import KeyCache
from adapter.api.problems import problem
from adapter.models import Merchant

REALM = 'Bearer realm="stadspas-adapter"'


def require_merchant(blueprint: Blueprint) -> None:
    """Every route of ``blueprint`` needs a valid, active merchant key."""
    blueprint.before_request(_authenticate)


def current_merchant() -> Merchant:
    return g.merchant


def _authenticate() -> None:
    if request.method == "OPTIONS":
        return  # Flask's own answer, the methods the address takes: no key by design (a browser's preflight)
    header = request.headers.get("Authorization", "")
    scheme, _, api_key = header.partition(" ")
    if scheme.lower() != "bearer" or not api_key.strip():
        raise problem("unauthorized", _no_bearer_key_detail(header), headers={"WWW-Authenticate": REALM})
    merchant = _merchant_for(api_key.strip())
    if merchant is None:
        raise problem("unauthorized", "Deze API-sleutel is onbekend, verlopen of ingetrokken. Controleer de "
                                      "sleutel in het kassasysteem of vraag de gemeente om een nieuwe.",
                      headers={"WWW-Authenticate": f'{REALM}, error="invalid_token"'})
    g.merchant = merchant


def _no_bearer_key_detail(header: str) -> str:
    if not header.strip():
        return ("Geen API-sleutel meegestuurd. Stuur de header 'Authorization: Bearer <sleutel>' met de sleutel van "
                "uw winkel.")
    # A till that sends the bare key, or "Basic ...", did send something: "no key" would send its developer looking
    # for a header that is there.
    return ("De header Authorization heeft niet de vorm 'Bearer <sleutel>'. Zet 'Bearer ' (met een spatie) voor de "
            "sleutel van uw winkel.")


def _merchant_for(api_key: str) -> Merchant | None:
    cache: KeyCache = current_app.extensions["adapter_key_cache"]
    key_hash = merchants.hash_key(api_key)
    merchant = cache.get(key_hash)
    if merchant is not None:
        return merchant
    with current_app.extensions["adapter_runtime"].db.read() as session:
        found = merchants.authenticate_key(session, api_key, now=cache.now())
    if found is None:
        return None
    merchant, key = found
    cache.put(key_hash, merchant, key.expires_at)
    return merchant
