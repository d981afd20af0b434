"""`stadspas-adapter sync SOURCE`, `sync history` and `sync show RUN`, with a stand-in for the connectors layer."""

from __future__ import annotations

import contextlib
import json
import types
from pathlib import Path

import pytest
from click.testing import CliRunner

from adapter.cli import cli
from tests.sync.records import household_records, rejected

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def source_records(monkeypatch):
    """What adapter.sources.read_source (connectors branch) yields; the test sets it per run. (The reading
    in a worker process is tested with a real source in tests/sync/test_read_ahead.py.)"""
    feed: dict[str, list] = {"records": []}
    calls = []

    def read_source(source_settings, *, source_name, base_dir=None, stall_seconds=None):
        calls.append((source_settings.connector, source_name))
        feed["stall_seconds"] = stall_seconds
        return contextlib.nullcontext(iter(feed["records"]))

    monkeypatch.setitem(__import__("sys").modules, "adapter.sources",
                        types.SimpleNamespace(read_source=read_source))
    feed["calls"] = calls
    return feed


def _config(tmp_path, database_url):
    config = tmp_path / "adapter.yaml"
    config.write_text(json.dumps({
        "data_dir": str(tmp_path / "var"), "database": {"url": database_url},
        "budgets": str(REPO_ROOT / "config" / "budgets.yaml"),
        "sources": {"gemeente": {"connector": "csv", "mapping": "m.yaml", "schedule": "03:30"}},
    }), encoding="utf-8")
    return config


def test_sync_dry_run_run_refusal_history_and_show(tmp_path, database_url, source_records):
    config = _config(tmp_path, database_url)
    runner = CliRunner()

    def sync(*args):
        return runner.invoke(cli, ["--config", str(config), "sync", *args])

    source_records["records"] = household_records(30) + rejected(1)
    dry = sync("gemeente", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "dry run: nothing was changed" in dry.output and "dry_run" in dry.output
    assert "999" not in dry.output  # BSNs masked
    assert "rejected line 9000: bsn: fails the BSN 11-proof" in dry.output

    done = sync("gemeente")
    assert done.exit_code == 0, done.output
    assert "succeeded" in done.output and "created 75" in done.output
    assert source_records["calls"][-1] == ("csv", "gemeente")

    source_records["records"] = []
    refused = sync("gemeente")
    assert refused.exit_code == 3
    assert "refused" in refused.output and "no records" in refused.output

    history = sync("history", "--source", "gemeente")
    assert history.exit_code == 0
    lines = history.output.splitlines()
    assert "refused" in lines[1] and "no records" in lines[2]
    assert "succeeded" in lines[3] and "dry_run" in lines[4]

    run_id = lines[3].split()[0]
    show = sync("show", run_id)
    assert show.exit_code == 0
    assert "line 9000: bsn: fails the BSN 11-proof" in show.output
    assert sync("show", "999").exit_code == 1


def test_unknown_source_names_the_configured_ones(tmp_path, sqlite_url, source_records):
    result = CliRunner().invoke(cli, ["--config", str(_config(tmp_path, sqlite_url)), "sync", "nergens"])
    assert result.exit_code == 1
    assert "unknown source 'nergens'; configured sources: gemeente" in result.output


def test_the_sync_stops_a_source_that_sends_nothing_for_the_configured_minutes(tmp_path, sqlite_url, source_records):
    # The stopping itself: tests/sync/test_read_ahead.py. Here: that the setting reaches it, 30 minutes by default.
    config = _config(tmp_path, sqlite_url)
    source_records["records"] = household_records(3)
    assert CliRunner().invoke(cli, ["--config", str(config), "sync", "gemeente", "--dry-run"]).exit_code == 0
    assert source_records["stall_seconds"] == 30 * 60
    settings = json.loads(config.read_text(encoding="utf-8"))
    config.write_text(json.dumps({**settings, "sync": {"read_stall_minutes": 2}}), encoding="utf-8")
    assert CliRunner().invoke(cli, ["--config", str(config), "sync", "gemeente", "--dry-run"]).exit_code == 0
    assert source_records["stall_seconds"] == 120


def test_a_sync_before_db_upgrade_says_to_run_it(tmp_path, source_records):
    # An operator who configures a source and tries `sync SOURCE --dry-run` before `db upgrade` must learn
    # what to do, not be told to run the sync again and report the line.
    config = _config(tmp_path, f"sqlite:///{tmp_path / 'fresh.db'}")
    source_records["records"] = household_records(3)
    for args in (["--dry-run"], []):
        result = CliRunner().invoke(cli, ["--config", str(config), "sync", "gemeente", *args])
        assert result.exit_code == 1
        assert "run `stadspas-adapter db upgrade` first" in result.output
        assert "report this line" not in result.output


def test_a_sync_from_the_command_line_records_a_new_rules_file_in_the_audit_trail(tmp_path, sqlite_url,
                                                                                   source_records):
    from sqlalchemy import select

    from adapter.audit import AuditEntry
    from adapter.db import Database

    config = _config(tmp_path, sqlite_url)
    source_records["records"] = household_records(5)
    for _night in range(2):
        done = CliRunner().invoke(cli, ["--config", str(config), "sync", "gemeente"])
        assert done.exit_code == 0, done.output
    db = Database(sqlite_url)
    try:
        with db.read() as session:
            entries = session.execute(select(AuditEntry.actor, AuditEntry.object_ref)
                                      .where(AuditEntry.action == "rules.changed")).all()
    finally:
        db.dispose()
    assert entries == [("operator", "rules:budgets.yaml")]


def test_a_dry_run_records_nothing_in_the_audit_trail(tmp_path, sqlite_url, source_records):
    """'dry run: nothing was changed' holds for the trail too: the rules file is recorded by the first real run."""
    from sqlalchemy import func, select

    from adapter.audit import AuditEntry
    from adapter.db import Database

    config = _config(tmp_path, sqlite_url)
    source_records["records"] = household_records(5)
    dry = CliRunner().invoke(cli, ["--config", str(config), "sync", "gemeente", "--dry-run"])
    assert dry.exit_code == 0 and "dry run: nothing was changed" in dry.output, dry.output
    db = Database(sqlite_url)
    try:
        with db.read() as session:
            assert session.execute(select(func.count()).select_from(AuditEntry)).scalar_one() == 0
    finally:
        db.dispose()


def test_a_changed_rules_file_read_by_two_processes_at_once_is_recorded_once(tmp_path, postgres_url, monkeypatch):
    """Both find the change before either records it (the CLI beside the scheduler's roll-over); inside the write
    transaction the second must wait for the first and then see its entry."""
    import threading

    from sqlalchemy import select

    from adapter import rules_trail
    from adapter.audit import AuditEntry
    from adapter.db import Database

    rules = tmp_path / "budgets.yaml"
    rules.write_text((REPO_ROOT / "config" / "budgets.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    db = Database(postgres_url)
    both_inside = threading.Barrier(2, timeout=1.5)
    asked = threading.local()
    original = rules_trail._last_fingerprint

    def last_fingerprint(session, object_ref):  # type: ignore[no-untyped-def]
        asked.count = getattr(asked, "count", 0) + 1
        if asked.count == 2:  # the second look, inside the write transaction: meet the other process there
            with contextlib.suppress(threading.BrokenBarrierError):
                both_inside.wait()
        return original(session, object_ref)

    monkeypatch.setattr(rules_trail, "_last_fingerprint", last_fingerprint)
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(rules_trail.record_if_changed(db, rules, "test")))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        with db.read() as session:
            entries = session.execute(select(AuditEntry.details_json).where(AuditEntry.action == "rules.changed")
                                      ).scalars().all()
    finally:
        db.dispose()
    assert sorted(results) == [False, True] and len(entries) == 1, entries


def test_a_forced_sync_runs_where_the_user_has_no_name(tmp_path, sqlite_url, source_records, monkeypatch):
    """A container started under a user id with no passwd entry (OpenShift's random ids, `docker run --user`):
    `sync --force` crashed on the operator's name, as the merchants and settlement commands no longer do."""
    import getpass

    def no_passwd_entry() -> str:
        raise KeyError("getpwuid(): uid not found: 1000650000")

    for variable in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(getpass, "getuser", no_passwd_entry)
    source_records["records"] = household_records(3)
    result = CliRunner().invoke(cli, ["--config", str(_config(tmp_path, sqlite_url)), "sync", "gemeente", "--force"])
    assert result.exit_code == 0, result.output
    assert "succeeded" in result.output


def test_the_scheduler_refuses_to_start_without_keys_in_production(tmp_path, sqlite_url, monkeypatch):
    """Started without keys, the scheduler ran and every night's sync failed with a traceback, recording no run;
    systemd or Docker saw a healthy process. It refuses at start instead, as `serve` does."""
    monkeypatch.delenv("ADAPTER_ENCRYPTION_KEYS")
    monkeypatch.delenv("ADAPTER_BLIND_INDEX_KEY")
    started = []
    monkeypatch.setattr("adapter.scheduler.run_scheduler", lambda *args: started.append(args))
    config = _config(tmp_path, sqlite_url)
    config.write_text(json.dumps({**json.loads(config.read_text(encoding="utf-8")), "environment": "production"}),
                      encoding="utf-8")
    result = CliRunner().invoke(cli, ["--config", str(config), "scheduler"])
    assert result.exit_code == 1
    assert "must be set outside development mode" in result.output and "keys generate" in result.output
    assert "Traceback" not in result.output
    assert started == []


def test_the_scheduler_refuses_to_start_on_a_mapping_or_rules_file_that_does_not_read(tmp_path, sqlite_url,
                                                                                         monkeypatch):
    """Started anyway, it ran all day and failed those syncs at night. Every problem is listed at once; a disabled
    source's broken mapping is not the scheduler's and does not stop it."""
    started = []
    monkeypatch.setattr("adapter.scheduler.run_scheduler", lambda *args: started.append(args))
    (tmp_path / "exports").mkdir()
    (tmp_path / "rules.yaml").write_text("rules:\n  - code: school\n", encoding="utf-8")
    good_mapping = (REPO_ROOT / "mappings" / "demo-csv.yaml").read_text(encoding="utf-8")
    (tmp_path / "good.yaml").write_text(good_mapping, encoding="utf-8")

    def scheduler(budgets: str, enabled_mapping: str):  # type: ignore[no-untyped-def]
        config = tmp_path / "adapter.yaml"
        csv = {"connector": "csv", "options": {"path": str(tmp_path / "exports")}, "schedule": "03:30"}
        config.write_text(json.dumps({
            "data_dir": str(tmp_path / "var"), "database": {"url": sqlite_url}, "budgets": budgets,
            "sources": {"gemeente": {**csv, "mapping": enabled_mapping},
                        "oud": {**csv, "mapping": "missing.yaml", "enabled": False}},
        }), encoding="utf-8")
        assert CliRunner().invoke(cli, ["--config", str(config), "db", "upgrade"]).exit_code == 0
        return CliRunner().invoke(cli, ["--config", str(config), "scheduler"])

    refused = scheduler(str(tmp_path / "rules.yaml"), "missing.yaml")
    assert refused.exit_code == 1 and started == []
    assert "the scheduler did not start: " in refused.output and "problem(s) in the configuration" in refused.output
    assert "sources.gemeente.mapping (missing.yaml): file not found" in refused.output
    assert "budgets (rules.yaml): rules.0.amount_cents: Field required" in refused.output
    assert "sources.oud" not in refused.output and "config check" in refused.output
    started_fine = scheduler(str(REPO_ROOT / "config" / "budgets.yaml"), "good.yaml")
    assert started_fine.exit_code == 0, started_fine.output
    assert len(started) == 1
