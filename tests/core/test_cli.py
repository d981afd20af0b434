from __future__ import annotations

import json

from click.testing import CliRunner
from sqlalchemy import update

from adapter import migrate
from adapter.cli import cli
from adapter.db import Database
from adapter.models import Budget
from tests import factories


def _write_config(tmp_path, database_url):
    config = tmp_path / "adapter.yaml"
    config.write_text(json.dumps({"data_dir": str(tmp_path / "var"), "database": {"url": database_url}}),
                      encoding="utf-8")
    return config


def test_ledger_verify_exits_nonzero_naming_each_mismatch(tmp_path, database_url, vault):
    config = _write_config(tmp_path, database_url)
    db = Database(database_url)
    child = factories.child_with_budget(db, vault, amount_cents=1_000)
    runner = CliRunner()

    clean = runner.invoke(cli, ["--config", str(config), "ledger", "verify"])
    assert clean.exit_code == 0, clean.output
    assert "ledger verified" in clean.output

    with db.write() as session:
        session.execute(update(Budget).where(Budget.id == child.budget_id).values(balance_cents=999))
    broken = runner.invoke(cli, ["--config", str(config), "ledger", "verify"])
    assert broken.exit_code == 1
    assert f"budget {child.budget_id}: balance 999 but entries sum to 1000" in broken.output
    db.dispose()


def test_db_upgrade_and_current(tmp_path):
    config = _write_config(tmp_path, f"sqlite:///{tmp_path / 'fresh.db'}")
    runner = CliRunner()
    before = runner.invoke(cli, ["--config", str(config), "db", "current"])
    assert before.exit_code == 1 and "db upgrade" in before.output
    upgraded = runner.invoke(cli, ["--config", str(config), "db", "upgrade"])
    assert upgraded.exit_code == 0 and f"revision {migrate.head_revision()}" in upgraded.output
    assert runner.invoke(cli, ["--config", str(config), "db", "current"]).exit_code == 0


def test_bad_config_is_reported_not_a_traceback(tmp_path):
    config = tmp_path / "adapter.yaml"
    config.write_text("api: {max_amount_cents: 0}\nfoo: 1\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["--config", str(config), "ledger", "verify"])
    assert result.exit_code == 1
    assert "2 problem(s)" in result.output and "Traceback" not in result.output
