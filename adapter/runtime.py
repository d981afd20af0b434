"""What a process needs to do its work, built once from the settings.

The CLI, the API and the scheduler each build one ``Runtime``; none of them
builds engines or keys on its own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from adapter.crypto import Vault, vault_from_environment
from adapter.db import Database
from adapter.rules import RulesError, load_rules
from adapter.settings import Settings

log = logging.getLogger("adapter.runtime")


@dataclass
class Runtime:
    settings: Settings

    @cached_property
    def db(self) -> Database:
        return Database(self.settings.database_url, pool_size=self.settings.database.pool_size)

    @cached_property
    def vault(self) -> Vault:
        return vault_from_environment(self.settings.data_dir, development=self.settings.is_development)

    @cached_property
    def _grace(self) -> GraceDays:
        return GraceDays(self.settings.budgets)

    @property
    def expiry_grace_days(self) -> int:
        """The rules' grace after a period's end: the counter's "expires on", and the last day a budget can be
        spent. As the rules file says now (see ``GraceDays``)."""
        return self._grace.current()

    def close(self) -> None:
        if "db" in self.__dict__:
            self.db.dispose()


class GraceDays:
    """``expiry_grace_days`` of a rules file, read again whenever the file changes.

    A long-running API worker must not keep an old value: the counter refuses a budget after its period's end
    plus this grace, and the roll-over, which reads the rules afresh each night, closes it then. Whether the
    file changed is one ``stat`` per request. A file that cannot be read counts as no grace (a late receipt is
    refused rather than a budget spent past its last day) and is tried again at least every ``RETRY_SECONDS``.
    """

    RETRY_SECONDS = 60.0

    def __init__(self, path: Path | None, clock: Callable[[], float] = time.monotonic):
        self._path = path
        self._clock = clock
        self._seen: tuple[int, int] | None = None  # the file's (mtime_ns, size) when it was last read
        self._value = 0
        self._failed_at: float | None = None

    def current(self) -> int:
        if self._path is None:
            return 0
        try:
            stat = self._path.stat()
            seen = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            seen = None
        retry = self._failed_at is not None and self._clock() - self._failed_at >= self.RETRY_SECONDS
        if seen != self._seen or retry or (self._seen is None and self._failed_at is None):
            self._seen = seen
            try:
                self._value, self._failed_at = load_rules(self._path).expiry_grace_days, None
            except RulesError as exc:
                if self._failed_at is None:
                    log.warning("budget rules unreadable, so the counter allows no grace after a period's end "
                                "(budgets are spendable up to their period's end only) until they can be read: %s",
                                exc)
                self._value, self._failed_at = 0, self._clock()
        return self._value
