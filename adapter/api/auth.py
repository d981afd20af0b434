"""Merchant API keys: ``Authorization: Bearer <key>``; the merchant lands in ``g.merchant``."""

from __future__ import annotations

from flask import Blueprint, current_app, g, request

from adapter import merchants
from adapter.api.problems import problem
from adapter.models import Merchant

REALM = 'Bearer realm="stadspas-adapter"'


def require_merchant(blueprint: Blueprint) -> None:
    """Every route of ``blueprint`` needs a valid, active merchant key."""
    blueprint.before_request(_authenticate)


def current_merchant() -> Merchant:
    return g.merchant


def _authenticate() -> None:
    scheme, _, api_key = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not api_key.strip():
        raise problem("unauthorized", "Geen API-sleutel meegestuurd. Stuur de header "
                                      "'Authorization: Bearer <sleutel>' met de sleutel van uw winkel.",
                      headers={"WWW-Authenticate": REALM})
    with current_app.extensions["adapter_runtime"].db.read() as session:
        merchant = merchants.authenticate(session, api_key.strip())
    if merchant is None:
        raise problem("unauthorized", "Deze API-sleutel is onbekend, verlopen of ingetrokken. Controleer de "
                                      "sleutel in het kassasysteem of vraag de gemeente om een nieuwe.",
                      headers={"WWW-Authenticate": f'{REALM}, error="invalid_token"'})
    g.merchant = merchant
