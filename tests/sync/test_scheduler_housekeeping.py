"""The scheduler's weekly retention job and the rules file's changes in the audit trail."""

from __future__ import annotations

import json
import logging
import shutil
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import select, update

from adapter import audit, sync_history
from adapter.audit import AuditEntry
from adapter.models import Cardholder, HolderStatus
from adapter.runtime import Runtime
from adapter.scheduler import build_jobs, rollover
from adapter.sync import AMSTERDAM
from tests import factories
from tests.conftest import DEMO_SOURCE, make_settings
from tests.sync.test_scheduler import _fire_times

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_retention_runs_weekly_on_sunday_at_five_amsterdam_time_across_both_dst_changes(tmp_path, sqlite_url):
    jobs = {job.job_id: job for job in build_jobs(Runtime(make_settings(tmp_path, sqlite_url)))}
    trigger = jobs["retention"].trigger
    assert str(trigger.timezone) == "Europe/Amsterdam"
    start = datetime(2026, 3, 1, tzinfo=AMSTERDAM)
    fired = _fire_times(trigger, start, start + timedelta(weeks=35))  # spans the March and October changes
    local = [moment.astimezone(AMSTERDAM) for moment in fired]
    assert len(local) == 35
    assert {(moment.strftime("%A"), moment.strftime("%H:%M")) for moment in local} == {("Sunday", "05:00")}
    assert set(Counter(moment.date() for moment in local).values()) == {1}


def test_the_retention_job_pseudonymises_cardholders_past_retention(tmp_path, sqlite_url, vault):
    runtime = Runtime(make_settings(tmp_path, sqlite_url))
    try:
        gone = factories.child_with_budget(runtime.db, vault)
        kept = factories.child_with_budget(runtime.db, vault)
        long_ago = datetime.now(timezone.utc) - timedelta(days=365 * runtime.settings.retention.months // 12 + 40)
        with runtime.db.write() as session:
            session.execute(update(Cardholder).where(Cardholder.id == gone.cardholder_id)
                            .values(status=HolderStatus.INACTIVE, deactivated_at=long_ago))
        job = {job.job_id: job for job in build_jobs(runtime)}["retention"]
        job.func()
        with runtime.db.read() as session:
            assert session.get(Cardholder, gone.cardholder_id).pseudonymised_at is not None
            assert session.get(Cardholder, kept.cardholder_id).pseudonymised_at is None
            applied = session.execute(select(AuditEntry).where(AuditEntry.action == "retention.applied")
                                      ).scalar_one()
            assert (applied.actor, json.loads(applied.details_json)["cardholders"]) == ("scheduler", 1)
    finally:
        runtime.close()


def _rules_entries(runtime: Runtime) -> list[tuple[str, str, dict]]:
    with runtime.db.read() as session:
        assert audit.verify(session) == []
        return [(entry.actor, entry.object_ref, json.loads(entry.details_json)) for entry in session.execute(
            select(AuditEntry).where(AuditEntry.action == "rules.changed").order_by(AuditEntry.id)).scalars()]


def test_a_changed_rules_file_is_recorded_once_in_the_audit_trail(tmp_path, database_url):
    rules_file = tmp_path / "budgets.yaml"
    shutil.copyfile(REPO_ROOT / "config" / "budgets.yaml", rules_file)
    runtime = Runtime(make_settings(tmp_path, database_url, budgets=str(rules_file)))
    try:
        rollover(runtime)
        rollover(runtime)  # unchanged: nothing new
        [(actor, object_ref, first)] = _rules_entries(runtime)
        assert (actor, object_ref, first["previous"]) == ("scheduler", "rules:budgets.yaml", None)

        rules_file.write_text(rules_file.read_text(encoding="utf-8").replace("amount_cents: 12500",
                                                                              "amount_cents: 13000"),
                              encoding="utf-8")
        rollover(runtime)
        rollover(runtime)
        entries = _rules_entries(runtime)
        assert len(entries) == 2
        assert entries[1][2]["previous"] == first["fingerprint"] != entries[1][2]["fingerprint"]
    finally:
        runtime.close()


def test_a_rules_file_that_cannot_be_read_fails_the_night_in_the_history_and_says_what_to_do(tmp_path, sqlite_url,
                                                                                             caplog):
    """The scheduler's sync read the rules before a run existed: a broken file logged "sync of source demo
    failed" with a traceback and stored nothing, so `sync history` and the dashboard showed the night before's
    success as the last word. The roll-over raised the same traceback through APScheduler."""
    rules_file = tmp_path / "budgets.yaml"
    rules_file.write_text("rules:\n  - code: x\n    amount_cents: lots\n", encoding="utf-8")
    runtime = Runtime(make_settings(tmp_path, sqlite_url, budgets=str(rules_file),
                                    sources={"demo": {**DEMO_SOURCE, "schedule": "04:15"}}))
    try:
        jobs = {job.job_id: job for job in build_jobs(runtime, tmp_path)}
        with caplog.at_level(logging.ERROR, logger="adapter.scheduler"):
            jobs["sync:demo"].func()
            assert rollover(runtime) == 0
        with runtime.db.read() as session:
            [run] = sync_history.recent_runs(session, source="demo")
    finally:
        runtime.close()
    assert run.status == "failed" and run.finished_at is not None
    assert run.reason.startswith("not started: the budget rules cannot be read; nothing was read or changed.")
    assert "budgets.yaml" in run.reason and "`stadspas-adapter sync demo`" in run.reason
    sync_line, rollover_line = (record for record in caplog.records if record.levelno == logging.ERROR)
    assert sync_line.getMessage() == f"sync of source demo {run.reason}" and sync_line.exc_info is None
    assert rollover_line.getMessage().startswith("rollover not run: the budget rules cannot be read")
    assert "budgets.yaml" in rollover_line.getMessage() and rollover_line.exc_info is None


def test_a_night_whose_source_fails_says_so_in_one_error_line_without_a_traceback(tmp_path, sqlite_url, caplog):
    """The sync logs a failed run's one line and stores its reason; the scheduler said it again under a second ERROR,
    traceback and all, so an operator's alerting on ERROR fired twice for one export that was not there."""
    export = tmp_path / "not-delivered-tonight.csv"
    source = {"connector": "csv", "mapping": DEMO_SOURCE["mapping"], "options": {"path": str(export)},
              "schedule": "04:15"}
    runtime = Runtime(make_settings(tmp_path, sqlite_url, sources={"demo": source}))
    try:
        jobs = {job.job_id: job for job in build_jobs(runtime, tmp_path)}
        with caplog.at_level(logging.INFO):
            jobs["sync:demo"].func()
        with runtime.db.read() as session:
            [run] = sync_history.recent_runs(session, source="demo")
    finally:
        runtime.close()
    assert run.status == "failed" and "not-delivered-tonight.csv" in run.reason
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert [record.getMessage() for record in errors] == [f"sync demo run {run.run_id} {run.reason}"]
    assert errors[0].exc_info is None


def test_a_night_that_failed_on_a_fault_of_ours_keeps_its_traceback_as_a_warning(tmp_path, sqlite_url, caplog,
                                                                                  monkeypatch):
    """The sync's line names only the class and text of a fault of ours ("failed: KeyError: 'x'"): its traceback is
    what the maintainers need, logged beside it as a warning so that the night still counts one ERROR."""
    import traceback

    import adapter.sync

    def broken(*_args, **_kwargs):
        raise KeyError("x")

    monkeypatch.setattr(adapter.sync, "_run_locked", broken)
    source = {**DEMO_SOURCE, "options": {**DEMO_SOURCE["options"], "path": str(tmp_path)}, "schedule": "04:15"}
    runtime = Runtime(make_settings(tmp_path, sqlite_url, sources={"demo": source}))
    try:
        jobs = {job.job_id: job for job in build_jobs(runtime, tmp_path)}
        with caplog.at_level(logging.INFO):
            jobs["sync:demo"].func()
    finally:
        runtime.close()
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert [record.getMessage() for record in errors] == ["sync demo run 1 failed: KeyError: 'x'"]
    # The log's redaction turns the traceback into its (redacted) text.
    [where] = [record for record in caplog.records if record.levelno == logging.WARNING
               and (record.exc_info or record.exc_text)]
    assert "for a report to the maintainers" in where.getMessage()
    assert "KeyError" in (where.exc_text or "".join(traceback.format_exception(*where.exc_info)))
