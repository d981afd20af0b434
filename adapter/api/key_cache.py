"""Per-worker cache of authenticated merchant keys, so most requests skip the key look-up.

Trade-off: a key that is disabled, revoked or rotated out keeps working in a worker
that saw it for at most ``api.auth_cache_seconds`` (default 5 s; 0 switches the
cache off). A key's own expiry is exact: an entry never outlives ``expires_at``.
Only keys that authenticated are cached (an unknown key is looked up every time
and cannot fill the cache), and the cache holds at most ``MAX_ENTRIES`` keys,
by their SHA-256 hash, never the key itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone

from adapter.models import Merchant

MAX_ENTRIES = 1_024


class KeyCache:
    def __init__(self, ttl_seconds: float, clock: Callable[[], float] = time.time):
        self.ttl_seconds = ttl_seconds
        self.clock = clock  # tests move it past the TTL
        self._entries: dict[str, tuple[Merchant, float]] = {}
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The cache's clock as a UTC time, so a key's expiry is judged by the same clock."""
        return datetime.fromtimestamp(self.clock(), timezone.utc)

    def get(self, key_hash: str) -> Merchant | None:
        with self._lock:
            found = self._entries.get(key_hash)
            if found is None:
                return None
            merchant, valid_until = found
            if self.clock() >= valid_until:
                del self._entries[key_hash]
                return None
            return merchant

    def put(self, key_hash: str, merchant: Merchant, key_expires_at: datetime | None) -> None:
        if self.ttl_seconds <= 0:
            return
        now = self.clock()
        valid_until = now + self.ttl_seconds
        if key_expires_at is not None:
            expires = key_expires_at if key_expires_at.tzinfo else key_expires_at.replace(tzinfo=timezone.utc)
            valid_until = min(valid_until, expires.timestamp())
        with self._lock:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[key_hash] = (merchant, valid_until)
