"""The audit trail as an attacker with DBA rights meets it: triggers off, a row edited or deleted."""

from __future__ import annotations

import json
from datetime import date

from click.testing import CliRunner
from sqlalchemy import select, text

from adapter import audit
from adapter.cli import cli
from adapter.db import Database
from adapter.demo import load_demo
from adapter.runtime import Runtime
from tests.conftest import make_settings


def _config(tmp_path, database_url):  # type: ignore[no-untyped-def]
    config = tmp_path / "adapter.yaml"
    config.write_text(json.dumps({"data_dir": str(tmp_path / "var"), "database": {"url": database_url}}),
                      encoding="utf-8")
    return str(config)


def _write_entries(db: Database, count: int) -> None:
    with db.write() as session:
        for number in range(1, count + 1):
            audit.record(session, "operator:test", "merchant.created", f"merchant:{number}")


def _disable_append_only_guard(db: Database) -> None:
    """What a DBA can do; the application never does."""
    with db.write() as session:
        if db.is_postgres:
            session.execute(text("ALTER TABLE audit_entries DISABLE TRIGGER audit_entries_append_only"))
        else:
            session.execute(text("DROP TRIGGER audit_entries_no_update"))
            session.execute(text("DROP TRIGGER audit_entries_no_delete"))


def test_verify_names_the_edited_row(tmp_path, database_url):
    db = Database(database_url)
    _write_entries(db, 4)
    config = _config(tmp_path, database_url)
    runner = CliRunner()
    clean = runner.invoke(cli, ["--config", config, "audit", "verify"])
    assert clean.exit_code == 0 and "4 entr(ies), chain intact" in clean.output

    _disable_append_only_guard(db)
    with db.write() as session:
        session.execute(text("UPDATE audit_entries SET actor = 'operator:nobody' WHERE id = 2"))
    edited = runner.invoke(cli, ["--config", config, "audit", "verify"])
    assert edited.exit_code == 1
    assert "audit entry 2: this row was changed after it was written" in edited.stderr
    assert "audit entry 3" not in edited.stderr and "1 problem(s)" in edited.output
    db.dispose()


def test_verify_names_the_row_after_a_deleted_one(tmp_path, database_url):
    db = Database(database_url)
    _write_entries(db, 4)
    _disable_append_only_guard(db)
    with db.write() as session:
        session.execute(text("DELETE FROM audit_entries WHERE id = 2"))
    result = CliRunner().invoke(cli, ["--config", _config(tmp_path, database_url), "audit", "verify"])
    assert result.exit_code == 1
    assert "audit entry 3: the row before it was changed or deleted" in result.stderr
    db.dispose()


def test_list_shows_the_newest_entries_oldest_first(tmp_path, sqlite_url):
    db = Database(sqlite_url)
    _write_entries(db, 5)
    result = CliRunner().invoke(cli, ["--config", _config(tmp_path, sqlite_url), "audit", "list", "--limit", "2"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert len(lines) == 2 and "merchant:4" in lines[0] and "merchant:5" in lines[1]
    assert "operator:test" in lines[0] and "merchant.created" in lines[0]
    db.dispose()


def test_demo_records_merchant_creation_and_key_rotation(tmp_path, sqlite_url, vault):
    db = Database(sqlite_url)
    today = date(2026, 3, 1)
    runtime = Runtime(make_settings(tmp_path, sqlite_url))
    load_demo(runtime, "http://x", today)
    (tmp_path / "var" / "demo.json").unlink()  # the next load cannot reuse the key: it rotates it
    load_demo(runtime, "http://x", today)
    with db.read() as session:
        actions = [(entry.actor, entry.action, entry.object_ref) for entry in
                   session.execute(select(audit.AuditEntry).order_by(audit.AuditEntry.id)).scalars()]
        assert audit.verify(session) == []
    assert actions == [("demo", "demo.loaded", "source:demo"), ("demo", "merchant.created", "merchant:1"),
                       ("demo", "merchant.key_rotated", "merchant:1")]
    db.dispose()
