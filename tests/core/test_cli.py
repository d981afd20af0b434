from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import update

from adapter import migrate
from adapter.cli import cli
from adapter.db import Database
from adapter.models import Budget
from tests import factories

REPO = Path(__file__).resolve().parents[2]


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


def test_db_upgrade_to_a_revision_it_does_not_know_is_one_sentence_not_a_traceback(tmp_path):
    config = _write_config(tmp_path, f"sqlite:///{tmp_path / 'fresh.db'}")
    refused = CliRunner().invoke(cli, ["--config", str(config), "db", "upgrade", "--revision", "0042"])
    assert refused.exit_code == 1 and isinstance(refused.exception, SystemExit)
    assert "'0042'" in refused.output and "0001" in refused.output and "nothing was changed" in refused.output
    assert migrate.current_revision(Database(f"sqlite:///{tmp_path / 'fresh.db'}")) is None


def test_a_database_locked_for_longer_than_the_wait_is_one_sentence_not_a_traceback(tmp_path, monkeypatch):
    """A second `db upgrade` beside a long one (a city's re-encryption takes over a minute) waits SQLite's busy
    timeout (60 s, too long for a test: the refusal SQLite gives then is raised here), and then says what to do."""
    import sqlite3

    from sqlalchemy.exc import OperationalError

    def locked(*_args, **_kwargs):  # type: ignore[no-untyped-def]
        raise OperationalError("BEGIN IMMEDIATE", {}, sqlite3.OperationalError("database is locked"))

    monkeypatch.setattr(migrate, "upgrade", locked)
    config = _write_config(tmp_path, f"sqlite:///{tmp_path / 'fresh.db'}")
    refused = CliRunner().invoke(cli, ["--config", str(config), "db", "upgrade"])
    assert refused.exit_code == 1 and isinstance(refused.exception, SystemExit)
    assert "the database is busy" in refused.output and "run the command again" in refused.output


def test_bad_config_is_reported_not_a_traceback(tmp_path):
    config = tmp_path / "adapter.yaml"
    config.write_text("api: {max_amount_cents: 0}\nfoo: 1\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["--config", str(config), "ledger", "verify"])
    assert result.exit_code == 1
    assert "2 problem(s)" in result.output and "Traceback" not in result.output


def test_a_database_without_schema_is_one_sentence_not_a_traceback(tmp_path):
    config = _write_config(tmp_path, f"sqlite:///{tmp_path / 'never-migrated.db'}")
    result = CliRunner().invoke(cli, ["--config", str(config), "ledger", "verify"])
    assert result.exit_code == 1
    assert "run `stadspas-adapter db upgrade` first" in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)


def test_ledger_correct_adds_an_audited_entry_and_refuses_going_below_zero(tmp_path, database_url, vault):
    from adapter import audit, ledger

    config = _write_config(tmp_path, database_url)
    db = Database(database_url)
    child = factories.child_with_budget(db, vault, amount_cents=1_000)
    runner = CliRunner()
    done = runner.invoke(cli, ["--config", str(config), "ledger", "correct", "--reason", "dubbel toegekend",
                               str(child.budget_id), "--", "-400"])
    assert done.exit_code == 0, done.output
    assert "balance now 600 cents" in done.output
    refused = runner.invoke(cli, ["--config", str(config), "ledger", "correct", "--reason", "te veel",
                                  str(child.budget_id), "--", "-700"])
    assert refused.exit_code == 1 and "nothing was changed" in refused.output
    with db.read() as session:
        assert ledger.balance_of(session, child.budget_id) == 600 and ledger.verify(session) == []
        actions = [entry.action for entry in session.query(audit.AuditEntry)]
    assert actions == ["ledger.corrected"]
    db.dispose()


def test_a_database_that_cannot_be_reached_is_one_sentence_not_a_traceback(tmp_path, monkeypatch):
    """PostgreSQL down (a port nothing listens on), the sync's commands included: they read the rules and the
    run history before anything else."""
    import socket

    with socket.socket() as probe:  # a free port: nothing listens on it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "adapter.yaml"
    export = tmp_path / "export.csv"
    export.write_text("", encoding="utf-8")
    config.write_text(json.dumps({
        "data_dir": str(tmp_path / "var"), "budgets": str(REPO / "config" / "budgets.yaml"),
        "sources": {"demo": {"connector": "csv", "mapping": str(REPO / "mappings" / "demo-csv.yaml"),
                             "options": {"path": str(export)}}}}), encoding="utf-8")
    monkeypatch.setenv("ADAPTER_DATABASE_URL", f"postgresql+psycopg://adapter@127.0.0.1:{port}/adapter")
    for command in (["ledger", "verify"], ["sync", "history"], ["sync", "run", "demo"]):
        result = CliRunner().invoke(cli, ["--config", str(config), *command])
        assert result.exit_code == 1, (command, result.output)
        assert "the database cannot be reached: check ADAPTER_DATABASE_URL" in result.output, (command, result.output)
        assert isinstance(result.exception, SystemExit), (command, result.exception)


def test_a_sqlite_file_that_cannot_be_made_owner_only_is_left_to_sqlite_not_a_traceback(tmp_path, monkeypatch):
    """A folder this account may not write to (simulated: the tests may run as root, whom no folder refuses) or a
    path through a file: making the owner-only file first raised there, a traceback before any command ran."""
    import os

    through_a_file = tmp_path / "not-a-folder"
    through_a_file.write_text("", encoding="utf-8")
    refused = tmp_path / "var" / "adapter.db"
    real_open = os.open

    def no_permission(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        if str(path) == str(refused):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", no_permission)
    config = tmp_path / "adapter.yaml"
    config.write_text(json.dumps({"data_dir": str(tmp_path / "data")}), encoding="utf-8")
    for database_file in (refused, through_a_file / "adapter.db"):
        monkeypatch.setenv("ADAPTER_DATABASE_URL", f"sqlite:///{database_file}")
        result = CliRunner().invoke(cli, ["--config", str(config), "ledger", "verify"])
        # SQLite's own open decides: it fails through the file, worded; root may write the other, without a schema.
        assert isinstance(result.exception, SystemExit), (database_file, result.exception)
        assert result.exit_code == 1 and "Traceback" not in result.output
    assert "the database cannot be reached" in CliRunner().invoke(
        cli, ["--config", str(config), "ledger", "verify"], env={"ADAPTER_DATABASE_URL":
                                                             f"sqlite:///{through_a_file / 'adapter.db'}"}).output


def test_the_same_correction_run_twice_books_once_unless_again(tmp_path, database_url, vault):
    """A correction has no idempotency key: the command run again from the shell's history (or after a terminal
    that dropped at the commit) must not book it twice. Two operators running it at the same moment, as two
    processes, book it once too."""
    import subprocess
    import sys

    from adapter import ledger

    config = _write_config(tmp_path, database_url)
    db = Database(database_url)
    child = factories.child_with_budget(db, vault, amount_cents=1_000)
    command = [str(Path(sys.executable).with_name("stadspas-adapter")), "--config", str(config), "ledger", "correct",
               "--reason", "dubbel toegekend", str(child.budget_id), "--", "-400"]
    racing = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
              for _ in range(2)]
    outcomes = sorted((process.wait(timeout=60), process.stdout.read()) for process in racing)
    assert [code for code, _ in outcomes] == [0, 1], outcomes
    assert "already has this correction" in outcomes[1][1] and "--again" in outcomes[1][1]
    runner = CliRunner()
    again = runner.invoke(cli, ["--config", str(config), "ledger", "correct", "--reason", "dubbel toegekend",
                                "--again", str(child.budget_id), "--", "-400"])
    assert again.exit_code == 0, again.output
    other_reason = runner.invoke(cli, ["--config", str(config), "ledger", "correct", "--reason", "nog een keer",
                                       str(child.budget_id), "--", "-100"])
    assert other_reason.exit_code == 0, other_reason.output
    with db.read() as session:
        assert ledger.balance_of(session, child.budget_id) == 100 and ledger.verify(session) == []
    db.dispose()


def test_a_correction_reason_longer_than_its_column_is_explained(tmp_path, database_url, vault):
    from adapter import ledger

    config = _write_config(tmp_path, database_url)
    db = Database(database_url)
    child = factories.child_with_budget(db, vault, amount_cents=1_000)
    refused = CliRunner().invoke(cli, ["--config", str(config), "ledger", "correct", "--reason", "x" * 501,
                                       str(child.budget_id), "--", "-100"])
    assert refused.exit_code == 1 and "at most 500 characters" in refused.output
    assert "nothing was changed" in refused.output and refused.exception.__class__ is SystemExit
    with db.read() as session:
        assert ledger.balance_of(session, child.budget_id) == 1_000
    db.dispose()
