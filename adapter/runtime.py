"""What a process needs to do its work, built once from the settings.

The CLI, the API and the scheduler each build one ``Runtime``; none of them
builds engines or keys on its own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property

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
    def expiry_grace_days(self) -> int:
        """The rules' grace after a period's end, read once per process: the counter's "expires on", and the last
        day a budget can be spent."""
        try:
            return load_rules(self.settings.budgets).expiry_grace_days
        except RulesError as exc:
            # Without it the counter takes no grace: a late receipt after a period's end is refused rather than a
            # budget spent past its last day. The roll-over reads the rules itself and fails loudly.
            log.warning("budget rules unreadable, so the counter allows no grace after a period's end (budgets "
                        "are spendable up to their period's end only) until they can be read: %s", exc)
            return 0

    def close(self) -> None:
        if "db" in self.__dict__:
            self.db.dispose()
