"""Municipal admin accounts for the dashboard, made only by the CLI.

A password is shown once, when the account is made, and stored as a salted
scrypt hash (standard library only): unlike merchant API keys, a person may
reuse or shorten it, so it gets a slow, salted KDF.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Boolean, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from adapter import audit
from adapter.models import Base, BigId, UtcDateTime, utcnow

# scrypt cost: about 50 ms and 16 MiB per check on a small server.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
_NAME_PATTERN = "letters, digits, '.', '-' or '_'"


class AdminAccount(Base):
    __tablename__ = "admin_accounts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


@dataclass(frozen=True)
class IssuedAdmin:
    admin_id: int
    name: str
    password: str  # shown once; never stored


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32)
    return "scrypt${}${}${}${}${}".format(_SCRYPT_N, _SCRYPT_R, _SCRYPT_P, _b64(salt), _b64(digest))


def password_matches(password: str, stored_hash: str) -> bool:
    try:
        scheme, n, r, p, salt_text, digest_text = stored_hash.split("$")
        if scheme != "scrypt":
            return False
        digest = hashlib.scrypt(password.encode("utf-8"), salt=_unb64(salt_text), n=int(n), r=int(r), p=int(p),
                                dklen=32)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, _unb64(digest_text))


def add_admin(session: Session, name: str, actor: str) -> IssuedAdmin:
    """Make an account with a fresh random password; records ``admin.created``."""
    name = name.strip()
    if not name or len(name) > 64 or not all(ch.isalnum() or ch in ".-_" for ch in name):
        raise ValueError(f"an admin name is 1-64 {_NAME_PATTERN}; got {name!r}")
    if session.execute(select(AdminAccount.id).where(AdminAccount.name == name)).first() is not None:
        raise ValueError(f"an admin named {name!r} already exists; choose another name")
    password = secrets.token_urlsafe(18)
    account = AdminAccount(name=name, password_hash=hash_password(password), active=True)
    session.add(account)
    session.flush()
    audit.record(session, actor, "admin.created", f"admin:{account.id}", name=name)
    return IssuedAdmin(account.id, name, password)


def disable_admin(session: Session, name: str, actor: str) -> AdminAccount:
    """Switch an account off: it can no longer sign in, and a page it has open is refused at its next request
    (the dashboard looks the account up on every one). Records ``admin.disabled``."""
    account = session.execute(select(AdminAccount).where(AdminAccount.name == name.strip())).scalar_one_or_none()
    if account is None:
        raise ValueError(f"no admin named {name!r}; `stadspas-adapter admins list` shows every account")
    if account.active:
        account.active = False
        session.flush()
        audit.record(session, actor, "admin.disabled", f"admin:{account.id}", name=account.name)
    return account


def authenticate(session: Session, name: str, password: str) -> AdminAccount | None:
    """The active account with this name and password, or None."""
    if len(name) > 64 or len(password) > 200:
        return None
    account = session.execute(select(AdminAccount).where(AdminAccount.name == name.strip())).scalar_one_or_none()
    if account is None:
        # Spend the same time as a real check, so a wrong name cannot be told from a wrong password.
        password_matches(password, _dummy_hash())
        return None
    if not password_matches(password, account.password_hash) or not account.active:
        return None
    return account


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@functools.cache
def _dummy_hash() -> str:
    # Computed on first use, not at import: every CLI command (the nightly sync too) imports this module.
    return hash_password("not-a-password", salt=b"\0" * 16)
