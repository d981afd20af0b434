"""Fixed-window rate limits kept in the database, so they hold across workers and hosts.

One row per (bucket, window); each hit is one atomic upsert that returns the new
count. Buckets are named by merchant id and purpose, never by pass number.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import BigInteger, Integer, String, delete
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, mapped_column

from adapter.db import Database
from adapter.models import Base


class RateCounter(Base):
    __tablename__ = "rate_counters"

    bucket: Mapped[str] = mapped_column(String(128), primary_key=True)
    window_start: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # unix seconds
    hits: Mapped[int] = mapped_column(Integer, default=0)


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    hits: int
    retry_after_seconds: int


def hit(db: Database, bucket: str, limit: int, window_seconds: int = 60, now: float | None = None,
        count: int = 1) -> Verdict:
    """Count ``count`` hits (one, or a lease's block); ``allowed`` is False once more than ``limit``
    hits fell in the current window."""
    now = time.time() if now is None else now
    window_start = int(now // window_seconds * window_seconds)
    insert = pg_insert if db.is_postgres else sqlite_insert
    statement = (
        insert(RateCounter).values(bucket=bucket, window_start=window_start, hits=count)
        .on_conflict_do_update(index_elements=["bucket", "window_start"], set_={"hits": RateCounter.hits + count})
        .returning(RateCounter.hits)
    )
    with db.write() as session:
        hits = session.execute(statement).scalar_one()
    retry_after = max(1, int(window_start + window_seconds - now + 0.999))
    return Verdict(hits <= limit, hits, retry_after)


def purge_before(db: Database, cutoff_unix: int) -> int:
    """Drop finished windows (the scheduler calls this; the table stays small)."""
    with db.write() as session:
        return session.execute(delete(RateCounter).where(RateCounter.window_start < cutoff_unix)).rowcount or 0
