"""Who is signed in on the web pages: one row per sign-in, so that signing out ends it on the server too.

The pages keep their session in a signed cookie. A cookie alone cannot be taken back: a copy made before
signing out (from a shared till, a proxy's log, malware) would go on working, and a cookie that is sent
again and again would never expire. So each sign-in is a row here, named by a random id that the cookie
carries; a page request is let in only while its row is open and younger than ``LIFETIME``, counted from
the sign-in, not from the last request. Signing out closes the row.

A row holds no personal data: the kind of sign-in (a shop's key, an administrator) and that key's or
account's row id. Closed and expired rows are deleted at the next sign-in.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import BigInteger, String, delete, or_, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from adapter.models import Base, UtcDateTime, machine_key, utcnow

LIFETIME = timedelta(hours=12)  # a working day at the counter; then sign in again
COUNTER, ADMIN = "counter", "admin"


class WebSession(Base):
    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(machine_key(64), primary_key=True)  # random, carried by the cookie
    kind: Mapped[str] = mapped_column(String(16))  # COUNTER or ADMIN
    subject_id: Mapped[int] = mapped_column(BigInteger)  # the merchant key's or the admin account's row id
    started_at: Mapped[datetime] = mapped_column(UtcDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


def start(session: Session, kind: str, subject_id: int, now: datetime | None = None) -> str:
    """A new sign-in's id, for the cookie; rows that can no longer be used are deleted on the way."""
    now = now or utcnow()
    session.execute(delete(WebSession).where(or_(WebSession.ended_at.is_not(None),
                                                 WebSession.started_at <= now - LIFETIME)))
    session_id = secrets.token_urlsafe(32)
    session.add(WebSession(id=session_id, kind=kind, subject_id=subject_id, started_at=now))
    session.flush()
    return session_id


def subject_of(session: Session, session_id: object, kind: str, now: datetime | None = None) -> int | None:
    """The key's or account's row id of an open sign-in of ``kind`` younger than ``LIFETIME``; else None."""
    if not isinstance(session_id, str):
        return None
    now = now or utcnow()
    return session.execute(
        select(WebSession.subject_id).where(WebSession.id == session_id, WebSession.kind == kind,
                                            WebSession.ended_at.is_(None), WebSession.started_at > now - LIFETIME)
    ).scalar_one_or_none()


def end(session: Session, session_id: object, now: datetime | None = None) -> None:
    """Close the sign-in: its cookie, or any copy of it, lets nobody in any more."""
    if isinstance(session_id, str):
        session.execute(update(WebSession).where(WebSession.id == session_id).values(ended_at=now or utcnow()))
