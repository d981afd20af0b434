"""What a process needs to do its work, built once from the settings.

The CLI, the API and the scheduler each build one ``Runtime``; none of them
builds engines or keys on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from adapter.crypto import Vault, vault_from_environment
from adapter.db import Database
from adapter.settings import Settings


@dataclass
class Runtime:
    settings: Settings

    @cached_property
    def db(self) -> Database:
        return Database(self.settings.database_url, pool_size=self.settings.database.pool_size)

    @cached_property
    def vault(self) -> Vault:
        return vault_from_environment(self.settings.data_dir, development=self.settings.is_development)

    def close(self) -> None:
        if "db" in self.__dict__:
            self.db.dispose()
