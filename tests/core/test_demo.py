"""`make run`'s demo: an export synced through the configured `demo` source, twice without harm."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

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
        assert view.budgets and all(shop.may_redeem(budget.category) for budget in view.budgets)
        with pytest.raises(counter.PassNotUsable):
            counter.check_balance(session, runtime.vault, shop, info.blocked_pass_number, TODAY)
    written = json.loads((tmp_path / "var" / "demo.json").read_text())
    assert written["pass_numbers"] == info.pass_numbers and written["base_url"] == "http://127.0.0.1:8080"
    runtime.close()


def test_after_an_export_of_ones_own_in_the_demo_folder_the_refusal_says_how_to_get_the_demo_back(
        tmp_path, database_url):
    """An operator tries `demo-data` through the only source there is, then runs `make run` again: the
    guard refuses the 10 demo households in place of 1,000. `demo load` has no --force, so its error names
    the command that has one, and that command does put the demo back."""
    from adapter.demo import DemoError
    from adapter.demo_data import write
    from adapter.rules import load_rules
    from adapter.sources import iter_mapped
    from adapter.sync import run_sync

    runtime = Runtime(make_settings(tmp_path, database_url))
    load_demo(runtime, "http://127.0.0.1:8080", TODAY)
    settings, source = runtime.settings, runtime.settings.sources["demo"]
    write("csv", tmp_path / "var" / "demo" / "exports" / "stadspas-2026-11-30.csv", 1_000, pass_year=2026)
    own = run_sync(runtime.db, runtime.vault, "demo", iter_mapped(source, source_name="demo"),
                   settings=settings.sync, rules=load_rules(settings.budgets), today=TODAY, force=True)
    assert own.ok and own.created > 4_000

    with pytest.raises(DemoError) as refused:
        load_demo(runtime, "http://127.0.0.1:8080", TODAY)
    assert "refused" in str(refused.value) and "run `stadspas-adapter sync demo --force`" in str(refused.value)

    advised = run_sync(runtime.db, runtime.vault, "demo", iter_mapped(source, source_name="demo"),
                       settings=settings.sync, rules=load_rules(settings.budgets), today=TODAY, force=True)
    assert advised.ok
    _, again = load_demo(runtime, "http://127.0.0.1:8080", TODAY)
    assert again.ok and again.unchanged == 10
    runtime.close()


def test_the_readme_lines_for_an_export_of_ones_own_size_run_as_printed(tmp_path):
    """README, Quick start: a made-up export of one's own size through the demo source, then its next night."""
    import re
    import subprocess
    import sys

    from tests.conftest import REPO, demo_installed

    quick_start = (REPO / "README.md").read_text(encoding="utf-8").split("## Quick start", 1)[1].split("\n## ", 1)[0]
    lines = re.search(r"To try the sync at a size of your own.*?```sh\n(.*?)```", quick_start, re.S).group(1)
    _, env = demo_installed(tmp_path)  # what `make run` does first
    venv_bin = Path(sys.executable).parent
    session = subprocess.run(["bash", "-euo", "pipefail", "-c", lines.replace(".venv/bin/", f"{venv_bin}/")],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert session.returncode == 0, session.stdout + session.stderr
    first, next_night = re.findall(r"^sync demo run \d+: succeeded.*$", session.stdout, re.M)
    assert "created 20" in first and "missing 10" in first and "(forced)" in first
    updated = int(re.search(r"updated (\d+)", next_night).group(1))
    assert 50 < updated < 400 and "created 0" in next_night
