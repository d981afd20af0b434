"""A real server on 127.0.0.1 (werkzeug in a thread) over a fresh SQLite database, with a shop and an admin."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from adapter import admins
from adapter.api import create_app
from adapter.db import Database
from adapter.models import utcnow
from adapter.periods import local_day
from tests import factories
from tests.conftest import make_settings

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"


@dataclass(frozen=True)
class WebWorld:
    base_url: str
    db: Database
    api_key: str
    merchant_id: int
    pass_number: str
    budget_id: int
    admin_name: str
    admin_password: str


@pytest.fixture
def web_app(sqlite_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    settings = make_settings(tmp_path, sqlite_url, settlement={"debtor_name": "Gemeente Voorbeeldstad",
                                                               "debtor_iban": "NL02ABNA0123456789"})
    return create_app(settings=settings)


@pytest.fixture
def web_world(web_app, vault) -> Iterator[WebWorld]:  # type: ignore[no-untyped-def]
    runtime = web_app.extensions["adapter_runtime"]
    db = runtime.db
    year = local_day(utcnow()).year
    child = factories.child_with_budget(db, vault, amount_cents=10_000, period=(date(year, 1, 1), date(year, 12, 31)))
    shop = factories.merchant(db, "Boekhandel De Pen", ("school",))
    with db.write() as session:
        admin = admins.add_admin(session, "beheerder", "test")
    server = make_server("127.0.0.1", 0, web_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield WebWorld(f"http://127.0.0.1:{server.server_port}", db, shop.api_key, shop.merchant_id,
                       child.pass_number, child.budget_id, admin.name, admin.password)
    finally:
        server.shutdown()
        thread.join(timeout=5)
        runtime.close()


@pytest.fixture(scope="session")
def browser():  # type: ignore[no-untyped-def]
    from playwright import sync_api
    if not Path("/usr/bin/chromium").exists():
        pytest.fail("browser tests need /usr/bin/chromium (Debian package chromium; .ci/run installs it)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        yield browser
        browser.close()


def screenshot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
