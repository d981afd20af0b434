"""Merchants and their API keys.

A key is shown once, when it is made, and stored only as its SHA-256 hash: the
key is 32 random bytes, so a hash needs no salt or slow KDF to resist guessing.
Look-up is by the hash itself (an indexed equality on a value the attacker
cannot choose to collide), and the final comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta

from schwifty import IBAN
from schwifty.exceptions import SchwiftyException
from sqlalchemy import select
from sqlalchemy.orm import Session

from adapter.models import Merchant, MerchantKey, utcnow

KEY_PREFIX = "spk_"


@dataclass(frozen=True)
class IssuedKey:
    merchant_id: int
    api_key: str  # shown once; never stored


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def normalise_iban(iban: str) -> str:
    """The IBAN in its compact form; ValueError naming the problem when it is not a valid IBAN."""
    try:
        parsed = IBAN(iban)
    except SchwiftyException as exc:
        raise ValueError(f"IBAN {iban!r} is not valid ({exc}); check it against the shop's bank statement") from None
    if not parsed.in_sepa_zone:
        # The municipality pays by SEPA credit transfer: a bank refuses such an IBAN in the file.
        raise ValueError(f"IBAN {iban!r} is of a country outside the SEPA zone, so the monthly SEPA transfer "
                         "cannot pay it; ask the shop for an account in the SEPA zone")
    return parsed.compact


MERCHANT_NAME_MAX_LENGTH = 200  # the column's length (adapter.models.Merchant.name)
# Control characters (tabs, line breaks, DEL, NEL) and the line and paragraph separators: each breaks a line of the
# settlement's CSV or SEPA file, or hides in it.
_BREAKS_A_LINE = ("Cc", "Zl", "Zp")


def add_merchant(session: Session, name: str, categories: list[str], iban: str | None = None) -> IssuedKey:
    if not name.strip():
        raise ValueError("a merchant needs a name")
    if len(name.strip()) > MERCHANT_NAME_MAX_LENGTH:
        # PostgreSQL refuses a longer one with a database error; SQLite would keep it and the SEPA file cut it.
        raise ValueError(f"a merchant's name has at most {MERCHANT_NAME_MAX_LENGTH} characters; give a shorter one")
    if any(unicodedata.category(character) in _BREAKS_A_LINE for character in name):
        raise ValueError("a merchant's name holds a control character (a tab or line break?); type it on one line")
    categories = [code.strip() for code in categories if code.strip()]
    if not categories:
        raise ValueError("a merchant needs at least one category it may redeem (or '*' for all)")
    merchant = Merchant(name=name.strip(), categories=",".join(sorted(set(categories))),
                        iban=normalise_iban(iban) if iban else None, active=True)
    session.add(merchant)
    session.flush()
    return IssuedKey(merchant.id, _issue_key(session, merchant.id))


def rotate_key(session: Session, merchant_id: int, grace: timedelta) -> IssuedKey:
    """A new key; the old ones keep working for ``grace`` so tills can be switched over."""
    merchant = session.get(Merchant, merchant_id)
    if merchant is None:
        raise LookupError(f"no merchant with id {merchant_id}; `stadspas-adapter merchants list` shows them")
    ends_at = utcnow() + grace
    for key in merchant.keys:
        if key.revoked_at is None and (key.expires_at is None or key.expires_at > ends_at):
            key.expires_at = ends_at
    return IssuedKey(merchant.id, _issue_key(session, merchant.id))


def set_iban(session: Session, merchant_id: int, iban: str) -> Merchant:
    """Where the municipality reimburses this merchant from the next settlement batch on."""
    merchant = session.get(Merchant, merchant_id)
    if merchant is None:
        raise LookupError(f"no merchant with id {merchant_id}; `stadspas-adapter merchants list` shows them")
    merchant.iban = normalise_iban(iban)
    return merchant


def list_merchants(session: Session) -> list[Merchant]:
    return list(session.execute(select(Merchant).order_by(Merchant.id)).scalars())


def disable_merchant(session: Session, merchant_id: int) -> Merchant:
    """Refuse every key of this merchant from now on; its redemptions stay in the ledger."""
    merchant = session.get(Merchant, merchant_id)
    if merchant is None:
        raise LookupError(f"no merchant with id {merchant_id}; `stadspas-adapter merchants list` shows them")
    merchant.active = False
    now = utcnow()
    for key in merchant.keys:
        if key.revoked_at is None:
            key.revoked_at = now
    return merchant


def authenticate(session: Session, api_key: str, now: datetime | None = None) -> Merchant | None:
    """The active merchant this key belongs to, or None."""
    found = authenticate_key(session, api_key, now)
    return found[0] if found else None


def authenticate_key(session: Session, api_key: str,
                     now: datetime | None = None) -> tuple[Merchant, MerchantKey] | None:
    """The active merchant with the key itself (for its ``expires_at``), or None."""
    if not api_key.startswith(KEY_PREFIX) or len(api_key) > 100:
        return None
    wanted = hash_key(api_key)
    # timing-safe: an index look-up by a SHA-256 the caller cannot steer; compared with compare_digest below.
    # One query: the key with its merchant.
    found = session.execute(select(MerchantKey, Merchant).join(Merchant, Merchant.id == MerchantKey.merchant_id)
                            .where(MerchantKey.key_hash == wanted)).one_or_none()
    if found is None:
        return None
    key, merchant = found
    if not hmac.compare_digest(key.key_hash, wanted):
        return None
    now = now or utcnow()
    return (merchant, key) if key.works_at(now) and merchant.active else None


def _issue_key(session: Session, merchant_id: int) -> str:
    api_key = new_api_key()
    session.add(MerchantKey(merchant_id=merchant_id, key_hash=hash_key(api_key), key_prefix=api_key[:10]))
    session.flush()
    return api_key
