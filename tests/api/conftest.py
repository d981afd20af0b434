"""An app on a fresh database, with a test client that checks every answer against the OpenAPI document."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from adapter import ledger
from adapter.api import create_app
from adapter.crypto import Vault
from adapter.db import Database
from adapter.models import Budget, PassState
from tests import factories
from tests.api.openapi_check import OpenApiChecker
from tests.conftest import make_settings

TODAY = date.today()
AROUND_TODAY = (TODAY - timedelta(days=60), TODAY + timedelta(days=60))


class CheckedClient(FlaskClient):
    """Every answer this client sees is validated against the app's own OpenAPI document."""

    checker: OpenApiChecker

    def open(self, *args: Any, **kwargs: Any):  # type: ignore[no-untyped-def,override]
        response = super().open(*args, **kwargs)
        request = response.request
        self.checker.check(request.method, request.path, response.status_code, response.headers, response.data)
        return response


@dataclass
class Api:
    app: Flask
    client: CheckedClient
    db: Database
    vault: Vault
    _keys = itertools.count(1)

    def shop(self, name: str = "Boekhandel", categories: tuple[str, ...] = ("school",)) -> str:
        return factories.merchant(self.db, name, categories).api_key

    def child(self, amount_cents: int = 10_000, category: str = "school",
              state: PassState = PassState.ACTIVE) -> factories.ChildWithBudget:
        return factories.child_with_budget(self.db, self.vault, amount_cents=amount_cents, category=category,
                                           pass_state=state, period=AROUND_TODAY)

    def check(self, api_key: str, pass_number: str, **kwargs: Any):  # type: ignore[no-untyped-def]
        return self.client.post("/v1/balance-checks", json={"pass_number": pass_number},
                                headers=_auth(api_key), **kwargs)

    def redeem(self, api_key: str, body: dict[str, Any], key: str | None = None):  # type: ignore[no-untyped-def]
        headers = {**_auth(api_key), "Idempotency-Key": key or str(uuid.uuid4())}
        return self.client.post("/v1/redemptions", json=body, headers=headers)

    def reverse(self, api_key: str, redemption_id: str, body: dict[str, Any],  # type: ignore[no-untyped-def]
                key: str | None = None):
        headers = {**_auth(api_key), "Idempotency-Key": key or str(uuid.uuid4())}
        return self.client.post(f"/v1/redemptions/{redemption_id}/reversals", json=body, headers=headers)

    def balance_cents(self, budget_id: int) -> int:
        with self.db.read() as session:
            return session.get(Budget, budget_id).balance_cents

    def verify_ledger(self) -> list[ledger.Mismatch]:
        with self.db.read() as session:
            return ledger.verify(session)


def _auth(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


def build_api(tmp_path: Path, database_url: str, vault: Vault, **overrides: Any) -> Api:
    app = create_app(settings=make_settings(tmp_path, database_url, **overrides))
    app.test_client_class = CheckedClient
    client = app.test_client()
    client.checker = OpenApiChecker(app.extensions["adapter_openapi"])
    return Api(app, client, app.extensions["adapter_runtime"].db, vault)


@pytest.fixture
def api(tmp_path: Path, sqlite_url: str, vault: Vault) -> Iterator[Api]:
    """The API on SQLite (fast); tests that must see PostgreSQL use ``api_any``."""
    built = build_api(tmp_path, sqlite_url, vault)
    yield built
    built.db.dispose()


@pytest.fixture
def api_any(tmp_path: Path, database_url: str, vault: Vault) -> Iterator[Api]:
    built = build_api(tmp_path, database_url, vault)
    yield built
    built.db.dispose()
