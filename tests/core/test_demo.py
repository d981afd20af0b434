"""`make run`'s demo: an export synced through the configured `demo` source, twice without harm."""

from __future__ import annotations

import json
from datetime import date

import pytest
from sqlalchemy import func, select

from adapter import counter, ledger
from adapter.demo import load_demo
from adapter.models import LedgerEntry, Merchant
from adapter.runtime import Runtime
from tests.conftest import make_settings

TODAY = date(2026, 11, 29)


def test_demo_loads_through_a_real_sync_and_a_second_load_changes_nothing(tmp_path, database_url):
    runtime = Runtime(make_settings(tmp_path, database_url))
    info, first = load_demo(runtime, "http://127.0.0.1:8080", TODAY)
    assert first.ok and first.created == 10 and first.rejected == 0 and first.budgets_granted > 0
    assert len(info.pass_numbers) >= 4 and info.blocked_pass_number not in info.pass_numbers
    with runtime.db.read() as session:
        entries_after_first = session.execute(select(func.count()).select_from(LedgerEntry)).scalar_one()

    again, second = load_demo(runtime, "http://127.0.0.1:8080", TODAY)
    assert (second.created, second.updated, second.unchanged) == (0, 0, 10)
    assert again.merchant_api_key == info.merchant_api_key
    with runtime.db.read() as session:
        assert session.execute(select(func.count()).select_from(LedgerEntry)).scalar_one() == entries_after_first
        assert ledger.verify(session) == []
        shop = session.execute(select(Merchant)).scalar_one()
        view = counter.check_balance(session, runtime.vault, shop, info.pass_numbers[0], TODAY)
        assert view.budgets and all(budget.redeemable_here for budget in view.budgets)
        with pytest.raises(counter.PassNotUsable):
            counter.check_balance(session, runtime.vault, shop, info.blocked_pass_number, TODAY)
    written = json.loads((tmp_path / "var" / "demo.json").read_text())
    assert written["pass_numbers"] == info.pass_numbers and written["base_url"] == "http://127.0.0.1:8080"
    runtime.close()
