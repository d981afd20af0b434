"""Abuse limits shared by every worker and host: one interface, two stores.

The database store (``adapter.ratelimit``) needs nothing extra; Redis takes the
write load off the database when ``ADAPTER_REDIS_URL`` is set. Both count hits
in fixed windows under a bucket name; buckets name a merchant and a purpose,
never a pass number.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Protocol

from sqlalchemy import select

from adapter import ratelimit
from adapter.db import Database
from adapter.ratelimit import RateCounter, Verdict

REDIS_URL_ENV = "ADAPTER_REDIS_URL"


class Limiter(Protocol):
    def hit(self, bucket: str, limit: int, window_seconds: int = 60) -> Verdict:
        """Count one hit; not allowed once more than ``limit`` hits fell in this window."""

    def peek(self, bucket: str, limit: int, window_seconds: int = 60) -> Verdict:
        """Whether the bucket is already full, without counting a hit."""


def _window(now: float, window_seconds: int) -> tuple[int, int]:
    window_start = int(now // window_seconds * window_seconds)
    return window_start, max(1, int(window_start + window_seconds - now + 0.999))


class DatabaseLimiter:
    def __init__(self, db: Database, clock: Callable[[], float] = time.time):
        self.db = db
        self.clock = clock  # tests pin it, so a run never straddles a window

    def hit(self, bucket: str, limit: int, window_seconds: int = 60) -> Verdict:
        return ratelimit.hit(self.db, bucket, limit, window_seconds, now=self.clock())

    def peek(self, bucket: str, limit: int, window_seconds: int = 60) -> Verdict:
        window_start, retry_after = _window(self.clock(), window_seconds)
        with self.db.read() as session:
            hits = session.execute(select(RateCounter.hits).where(
                RateCounter.bucket == bucket, RateCounter.window_start == window_start)).scalar_one_or_none() or 0
        return Verdict(hits < limit, hits, retry_after)


class RedisLimiter:
    """INCR on one key per bucket and window, which expires with the window."""

    def __init__(self, url: str, prefix: str = "stadspas-adapter:rate:", clock: Callable[[], float] = time.time):
        import redis  # only needed when Redis is configured

        self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self.prefix = prefix
        self.clock = clock

    def hit(self, bucket: str, limit: int, window_seconds: int = 60) -> Verdict:
        window_start, retry_after = _window(self.clock(), window_seconds)
        key = f"{self.prefix}{bucket}:{window_start}"
        pipeline = self.client.pipeline(transaction=True)
        pipeline.incr(key)
        pipeline.expire(key, window_seconds + 1)
        hits, _ = pipeline.execute()
        return Verdict(int(hits) <= limit, int(hits), retry_after)

    def peek(self, bucket: str, limit: int, window_seconds: int = 60) -> Verdict:
        window_start, retry_after = _window(self.clock(), window_seconds)
        hits = int(self.client.get(f"{self.prefix}{bucket}:{window_start}") or 0)
        return Verdict(hits < limit, hits, retry_after)


def balance_checks_bucket(merchant_id: int) -> str:
    return f"balance-checks:merchant:{merchant_id}"


def unusable_passes_bucket(merchant_id: int) -> str:
    """One count per shop for the API and the counter page alike: switching between them gains an enumerator nothing."""
    return f"unusable-passes:merchant:{merchant_id}"


def limiter_for(db: Database, redis_url: str | None = None) -> Limiter:
    """Redis when ``ADAPTER_REDIS_URL`` (or ``redis_url``) names one, else the database."""
    redis_url = redis_url or os.environ.get(REDIS_URL_ENV)
    return RedisLimiter(redis_url) if redis_url else DatabaseLimiter(db)
