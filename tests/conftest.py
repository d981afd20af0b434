"""Shared fixtures: fresh databases (SQLite always, PostgreSQL when configured), keys, settings.

PostgreSQL tests use ADAPTER_TEST_DATABASE_URL. Each test gets its own database,
cloned from a migrated template, so tests never see each other's rows. Without
the URL they are skipped with a reason, unless REQUIRE_POSTGRES=1 makes that a failure.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from adapter import migrate
from adapter.crypto import BLIND_INDEX_KEY_ENV, ENCRYPTION_KEYS_ENV, Vault
from adapter.db import Database
from adapter.settings import Settings, settings_from_mapping

# Fixed keys for the suite: generated for these tests, protecting only fixture data.
TEST_ENCRYPTION_KEY = "q9B2PXkHq1hXU2d0w3V0nlYk7Y1fI8JbK1ZrH8nS1Yc="
TEST_BLIND_INDEX_KEY = "dGVzdC1ibGluZC1pbmRleC1rZXktMzItYnl0ZXMtbG9uZyE="
os.environ.setdefault(ENCRYPTION_KEYS_ENV, TEST_ENCRYPTION_KEY)
os.environ.setdefault(BLIND_INDEX_KEY_ENV, TEST_BLIND_INDEX_KEY)

# Scans every log line and problem response of the run for fixture personal data.
pytest_plugins = ["tests.log_capture_plugin"]

POSTGRES_URL_ENV = "ADAPTER_TEST_DATABASE_URL"
_REPO_ROOT = Path(__file__).resolve().parent.parent


def postgres_url_or_skip() -> str:
    url = os.environ.get(POSTGRES_URL_ENV)
    if url:
        return url
    reason = f"PostgreSQL tests need {POSTGRES_URL_ENV} (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)"
    if os.environ.get("REQUIRE_POSTGRES") == "1":
        pytest.fail(f"REQUIRE_POSTGRES=1 but {reason}")
    pytest.skip(reason)


class PostgresDatabases:
    """Creates throw-away databases on the server named by ADAPTER_TEST_DATABASE_URL."""

    def __init__(self, base_url: str):
        self.base_url = make_url(base_url)
        self.admin = create_engine(self.base_url, isolation_level="AUTOCOMMIT")
        self.template = f"spa_tpl_{uuid.uuid4().hex[:10]}"
        self.created: list[str] = []
        self._run(f'CREATE DATABASE "{self.template}"')
        template_db = Database(self.url_for(self.template))
        migrate.upgrade(template_db)
        template_db.dispose()

    def url_for(self, name: str) -> str:
        return self.base_url.set(database=name).render_as_string(hide_password=False)

    def fresh(self) -> str:
        name = f"spa_t_{uuid.uuid4().hex[:12]}"
        self._run(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        self.created.append(name)
        return self.url_for(name)

    def empty(self) -> str:
        """A database with no schema at all, as a first installation finds it."""
        name = f"spa_t_{uuid.uuid4().hex[:12]}"
        self._run(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return self.url_for(name)

    def drop_all(self) -> None:
        for name in [*self.created, self.template]:
            self._run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.admin.dispose()

    def _run(self, sql: str) -> None:
        with self.admin.connect() as connection:
            connection.execute(text(sql))


def service_missing(reason: str) -> NoReturn:
    """A service or tool a test needs is absent: skip on a developer's machine, fail in CI.

    `.ci/run` starts Redis and installs wrk and Chromium, and sets REQUIRE_POSTGRES=1; there a
    missing service is a broken CI step, never a reason to pass with less tested.
    """
    if os.environ.get("REQUIRE_POSTGRES") == "1":
        pytest.fail(f"REQUIRE_POSTGRES=1 (CI) but {reason}")
    pytest.skip(reason)


REDIS_URL = "redis://127.0.0.1:6379/15"


def redis_limiter(clock: Callable[[], float]):  # type: ignore[no-untyped-def]
    """A Redis limiter on a fresh key prefix, for the tests that run the limits on both backends."""
    from adapter.limits import RedisLimiter

    limiter = RedisLimiter(REDIS_URL, prefix=f"test:{uuid.uuid4().hex}:", clock=clock)
    try:
        limiter.client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure to connect means "no Redis here"
        service_missing(f"no Redis answers on {REDIS_URL} ({type(exc).__name__})")
    return limiter


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[PostgresDatabases]:
    databases = PostgresDatabases(postgres_url_or_skip())
    yield databases
    databases.drop_all()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    template_db = Database(f"sqlite:///{path}")
    migrate.upgrade(template_db)
    template_db.dispose()
    return path


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "adapter.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def postgres_url(postgres_databases: PostgresDatabases) -> str:
    return postgres_databases.fresh()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """A fresh, migrated database of each kind."""
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url, pool_size=10)
    yield database
    database.dispose()


@pytest.fixture
def vault() -> Vault:
    return Vault([TEST_ENCRYPTION_KEY], TEST_BLIND_INDEX_KEY)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(tmp_path, database_url)


# The demo source as config/adapter.yaml has it, its export folder inside the test's own var/.
DEMO_SOURCE = {"connector": "csv", "mapping": str(_REPO_ROOT / "mappings" / "demo-csv.yaml"),
               "options": {"path": "var/demo/exports", "file_pattern": "stadspas-*.csv", "encoding": "auto"}}


def demo_installed(tmp_path: Path) -> tuple[dict, dict[str, str]]:
    """What `make run` sets up first, in ``tmp_path``: a development configuration on SQLite with the demo source,
    its schema and the demo loaded, through the installed command. Returns the configuration and the environment
    that names it."""
    import json
    import subprocess
    import sys

    config = {"environment": "development", "data_dir": str(tmp_path / "var"),
              "database": {"url": f"sqlite:///{tmp_path / 'var' / 'adapter.db'}"},
              "budgets": str(_REPO_ROOT / "config" / "budgets.yaml"), "sources": {"demo": DEMO_SOURCE}}
    (tmp_path / "adapter.yaml").write_text(json.dumps(config), encoding="utf-8")
    env = {**os.environ, "ADAPTER_CONFIG": str(tmp_path / "adapter.yaml")}
    env.pop("ADAPTER_DATABASE_URL", None)
    for command in (["db", "upgrade"], ["demo", "load"]):
        subprocess.run([str(Path(sys.executable).parent / "stadspas-adapter"), *command], env=env, check=True,
                       capture_output=True)
    return config, env


def production_config(tmp_path: Path, database_url: str) -> Path:
    """A production configuration file on ``database_url``: the keys come from the environment alone."""
    import json

    config = tmp_path / "adapter.yaml"
    config.write_text(json.dumps({"environment": "production", "data_dir": str(tmp_path / "var"),
                                  "database": {"url": database_url}}), encoding="utf-8")
    return config


def make_settings(tmp_path: Path, database_url: str, **overrides: object) -> Settings:
    raw: dict = {"environment": "development", "data_dir": str(tmp_path / "var"),
                 "database": {"url": database_url}, "budgets": str(_REPO_ROOT / "config" / "budgets.yaml"),
                 "sources": {"demo": DEMO_SOURCE}}
    raw.update(overrides)
    return settings_from_mapping(raw, tmp_path / "adapter.yaml")


# ---------------------------------------------------------------- sources

@pytest.fixture
def demo_csv_source():  # type: ignore[no-untyped-def]
    """The checked-in demo CSV source, as the settings would hold it."""
    from adapter.settings import SourceSettings

    return SourceSettings(
        connector="csv",
        mapping=_REPO_ROOT / "mappings" / "demo-csv.yaml",
        options={"path": str(_REPO_ROOT / "connectors" / "samples" / "csv" / "exports")},
        schedule="04:15",
    )


REPO = _REPO_ROOT


def make_source(connector: str, mapping: Path, options: dict | None = None, **extra: object):  # type: ignore[no-untyped-def]
    """A real SourceSettings, built the short way for tests."""
    from adapter.settings import SourceSettings

    return SourceSettings(connector=connector, mapping=mapping, options=options or {}, **extra)


class SettingsWithSources:
    """Only the ``sources`` part of the settings, for commands that read nothing else."""

    def __init__(self, sources: dict):
        self.sources = sources
