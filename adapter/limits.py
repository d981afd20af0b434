"""Abuse limits shared by every worker and host: one interface, two stores.

The database store (``adapter.ratelimit``) needs nothing extra; Redis takes the
write load off the database when ``ADAPTER_REDIS_URL`` is set. Both count hits
in fixed windows under a bucket name; buckets name a merchant and a purpose,
never a pass number.

Two ways to count:
- ``hit`` and ``peek`` are exact: every hit is one atomic write to the shared
  counter. The enumeration limit (unknown passes) uses them: it peeks before a
  look-up, in the look-up's own statement, and counts a miss after it. Look-ups
  already in flight when the count reaches the limit still finish, so a shop gets
  at most the limit plus one less than its look-ups in flight at once (with
  gunicorn's sync workers: the workers of every host, 4 to 8 on a 2-core VM) in a
  window. Reserving a count before every look-up would make it exact at the cost
  of a write on every balance check, the counter's most frequent request; against
  pass numbers of ten or more digits, a few more misses a minute teach nothing.
- ``hit_leased`` is for high-volume limits (balance checks per key). On the
  database a process takes a *lease* of a block of hits from the shared counter
  with one atomic upsert, granted only up to the limit, and then counts locally
  until the block is used up: one write per block instead of one per request.
  The trade-off: leased hits a process does not use before the window ends are
  lost, so a key may get fewer than ``limit`` hits in a window (at most
  ``processes x (block - 1)`` fewer), never more. Once the shared counter is
  full, a process refuses locally for the rest of that window without asking
  the database again (a full fixed window cannot become less full). The block
  is a twentieth of the limit, at most ``MAX_LEASE``: small limits (the tests'
  5) stay exact. On Redis every hit is one INCR, which is already cheap.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import ColumnElement, bindparam, select

from adapter import ratelimit
from adapter.db import Database
from adapter.ratelimit import RateCounter, Verdict

REDIS_URL_ENV = "ADAPTER_REDIS_URL"
MAX_LEASE = 50  # hits one process takes from the shared counter at a time
LEASE_SHARE = 20  # ... and at most 1/20 of the limit, so the loss at a window's end stays small
# What a till or a cashier is asked to wait while the store does not answer (a restarting Redis is back by then).
UNAVAILABLE_RETRY_AFTER_SECONDS = 30


@dataclass(frozen=True)
class PendingPeek:
    """A ``peek`` that rides along in the caller's own statement, saving it a round trip.

    Select ``column`` in that statement with ``params`` bound (None: there is nothing to select,
    e.g. on Redis), then pass what it read to ``verdict``. The column is the same object every
    time, so a statement built around it once is reused (building statements costs more CPU
    than running them).
    """

    column: ColumnElement[Any] | None
    params: dict[str, Any]
    verdict: Callable[[Any], Verdict]


class LimitsUnavailable(RuntimeError):
    """The store the limits are counted in did not answer, so no limit can be judged.

    The limits then fail closed: a look-up or payment that would count is refused rather than let through
    uncounted (failing open would let an enumerator try pass numbers unthrottled while Redis is away).
    """


class Limiter(Protocol):
    def hit(self, bucket: str, limit: int, window_seconds: int = 60) -> Verdict:
        """Count one hit; not allowed once more than ``limit`` hits fell in this window."""

    def hit_leased(self, bucket: str, limit: int, window_seconds: int = 60) -> Verdict:
        """Like ``hit``, but may count locally within a lease: never looser, sometimes stricter."""

    def peek(self, bucket: str, limit: int, window_seconds: int = 60) -> Verdict:
        """Whether the bucket is already full, without counting a hit."""

    def peek_pending(self, bucket: str, limit: int, window_seconds: int = 60) -> PendingPeek:
        """``peek`` in two halves: a column for the caller's statement, then the verdict on its value."""

    def check(self) -> None:
        """Raise LimitsUnavailable when the store does not answer (for the readiness check)."""


def _window(now: float, window_seconds: int) -> tuple[int, int]:
    window_start = int(now // window_seconds * window_seconds)
    return window_start, max(1, int(window_start + window_seconds - now + 0.999))


@dataclass
class _Lease:
    window_start: int
    left: int  # leased hits this process has not used yet
    full: bool  # the shared counter reached the limit in this window


class DatabaseLimiter:
    def __init__(self, db: Database, clock: Callable[[], float] = time.time):
        self.db = db
        self.clock = clock  # tests pin it, so a run never straddles a window
        self._leases: dict[str, _Lease] = {}
        self._lock = threading.Lock()  # gunicorn's sync workers are single-threaded; the dev server is not

    def hit(self, bucket: str, limit: int, window_seconds: int = 60) -> Verdict:
        return ratelimit.hit(self.db, bucket, limit, window_seconds, now=self.clock())

    def hit_leased(self, bucket: str, limit: int, window_seconds: int = 60) -> Verdict:
        now = self.clock()
        window_start, retry_after = _window(now, window_seconds)
        with self._lock:
            lease = self._leases.get(bucket)
            if lease is None or lease.window_start != window_start:
                lease = self._leases[bucket] = _Lease(window_start, 0, False)
            if lease.left == 0 and not lease.full:
                block = max(1, min(MAX_LEASE, limit // LEASE_SHARE))
                hits = ratelimit.hit(self.db, bucket, limit, window_seconds, now=now, count=block).hits
                # Granted: the part of this block that still fell within the limit.
                lease.left = max(0, min(block, limit - (hits - block)))
                lease.full = hits >= limit
            if lease.left == 0:
                return Verdict(False, limit + 1, retry_after)
            lease.left -= 1
            return Verdict(True, limit - lease.left, retry_after)

    def peek(self, bucket: str, limit: int, window_seconds: int = 60) -> Verdict:
        pending = self.peek_pending(bucket, limit, window_seconds)
        with self.db.read() as session:
            return pending.verdict(session.execute(_READ_HITS, pending.params).scalar_one())

    def peek_pending(self, bucket: str, limit: int, window_seconds: int = 60) -> PendingPeek:
        window_start, retry_after = _window(self.clock(), window_seconds)

        def verdict(hits: int | None) -> Verdict:
            return Verdict((hits or 0) < limit, hits or 0, retry_after)

        return PendingPeek(_HITS_NOW, {"rate_bucket": bucket, "rate_window_start": window_start}, verdict)

    def check(self) -> None:
        """Nothing of its own to check: the counts are in the database, which the readiness check asks itself."""


_HITS_NOW = select(RateCounter.hits).where(RateCounter.bucket == bindparam("rate_bucket"),
                                           RateCounter.window_start == bindparam("rate_window_start")) \
    .scalar_subquery()
_READ_HITS = select(_HITS_NOW)


class RedisLimiter:
    """INCR on one key per bucket and window, which expires with the window.

    A Redis that does not answer (stopped, restarted, unreachable) raises LimitsUnavailable from every call,
    which the API answers with 503 and the operator's log names: see ``LimitsUnavailable`` for why it fails closed.
    """

    def __init__(self, url: str, prefix: str = "stadspas-adapter:rate:", clock: Callable[[], float] = time.time):
        import redis  # only needed when Redis is configured

        self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self.prefix = prefix
        self.clock = clock
        self._errors: tuple[type[Exception], ...] = (redis.RedisError,)

    def hit(self, bucket: str, limit: int, window_seconds: int = 60) -> Verdict:
        window_start, retry_after = _window(self.clock(), window_seconds)
        key = f"{self.prefix}{bucket}:{window_start}"
        with self._answering():
            pipeline = self.client.pipeline(transaction=True)
            pipeline.incr(key)
            pipeline.expire(key, window_seconds + 1)
            hits, _ = pipeline.execute()
        return Verdict(int(hits) <= limit, int(hits), retry_after)

    def hit_leased(self, bucket: str, limit: int, window_seconds: int = 60) -> Verdict:
        return self.hit(bucket, limit, window_seconds)  # one INCR is already cheap

    def peek(self, bucket: str, limit: int, window_seconds: int = 60) -> Verdict:
        window_start, retry_after = _window(self.clock(), window_seconds)
        with self._answering():
            hits = int(self.client.get(f"{self.prefix}{bucket}:{window_start}") or 0)
        return Verdict(hits < limit, hits, retry_after)

    def peek_pending(self, bucket: str, limit: int, window_seconds: int = 60) -> PendingPeek:
        return PendingPeek(None, {}, lambda _nothing: self.peek(bucket, limit, window_seconds))

    def check(self) -> None:
        with self._answering():
            self.client.ping()

    @contextlib.contextmanager
    def _answering(self) -> Iterator[None]:
        try:
            yield
        except self._errors as error:
            raise LimitsUnavailable(
                f"Redis, where the rate limits are counted ({REDIS_URL_ENV}), did not answer ({type(error).__name__}); "
                "balance checks, payments and sign-ins are refused until it does. Start Redis or check "
                f"{REDIS_URL_ENV}; to count in the database instead, unset it and restart the API") from None


def balance_checks_bucket(merchant_id: int) -> str:
    return f"balance-checks:merchant:{merchant_id}"


def unusable_passes_bucket(merchant_id: int) -> str:
    """One count per shop for the API and the counter page alike: switching between them gains an enumerator nothing."""
    return f"unusable-passes:merchant:{merchant_id}"


def limiter_for(db: Database, redis_url: str | None = None) -> Limiter:
    """Redis when ``ADAPTER_REDIS_URL`` (or ``redis_url``) names one, else the database."""
    redis_url = redis_url or os.environ.get(REDIS_URL_ENV)
    return RedisLimiter(redis_url) if redis_url else DatabaseLimiter(db)
