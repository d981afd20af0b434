"""Crash safety (SIGKILL mid-run, then rerun) and one sync per source across processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from adapter import ledger
from adapter.db import Database
from adapter.models import Budget, Cardholder, Household, LedgerEntry, Pass, SyncLock, SyncRun, SyncStatus
from adapter.sync import run_sync
from tests.sync.records import SIMPLE_RULES, SYNC_SETTINGS, TODAY, household_records

HOUSEHOLDS = 300
REPO_ROOT = Path(__file__).resolve().parents[2]


def _start_child(database_url: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tests.sync.sync_child", database_url, str(HOUSEHOLDS), *extra],
                            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_paused(child: subprocess.Popen) -> None:
    line = child.stdout.readline()
    assert line.startswith("PAUSED"), f"child did not pause: {line!r} {child.stderr.read() if child.poll() else ''}"


def _state(database_url: str):
    """Everything a sync decides, without database ids or timestamps."""
    db = Database(database_url)
    try:
        with db.read() as session:
            return {
                "households": session.execute(select(Household.source_key).order_by(Household.source_key)).all(),
                "cardholders": session.execute(
                    select(Cardholder.source_key, Cardholder.content_hash, Cardholder.status)
                    .order_by(Cardholder.source_key)).all(),
                "passes": session.execute(
                    select(Pass.pass_number, Pass.status, Pass.valid_until, Cardholder.source_key)
                    .join(Cardholder, Cardholder.id == Pass.cardholder_id).order_by(Pass.pass_number)).all(),
                "budgets": session.execute(
                    select(Cardholder.source_key, Budget.rule_code, Budget.period_key, Budget.granted_cents,
                           Budget.balance_cents).join(Cardholder, Cardholder.id == Budget.cardholder_id)
                    .order_by(Cardholder.source_key, Budget.rule_code)).all(),
                "ledger": session.execute(select(func.count(), func.sum(LedgerEntry.amount_cents))).one(),
                "locks": session.execute(select(func.count()).select_from(SyncLock)).scalar_one(),
                "ledger_problems": ledger.verify(session),
            }
    finally:
        db.dispose()


def _clean_run_state(database_url: str, vault) -> dict:
    db = Database(database_url)
    try:
        result = run_sync(db, vault, "gemeente", household_records(HOUSEHOLDS), settings=SYNC_SETTINGS,
                          rules=SIMPLE_RULES, today=TODAY)
        assert result.status == SyncStatus.SUCCEEDED
    finally:
        db.dispose()
    return _state(database_url)


@pytest.fixture
def second_database_url(request, database_url):
    """Another fresh database of the same kind, for the clean reference run."""
    if database_url.startswith("sqlite"):
        return _copy_sqlite(request, database_url)
    return request.getfixturevalue("postgres_databases").fresh()


def _copy_sqlite(request, database_url: str) -> str:
    template = request.getfixturevalue("sqlite_template")
    target = Path(database_url.removeprefix("sqlite:///")).with_name("reference.db")
    target.write_bytes(template.read_bytes())
    return f"sqlite:///{target}"


@pytest.mark.parametrize("kill_point", [("--pause-after", "250"), ("--pause-at", "granting")],
                         ids=["while-reading", "inside-the-write-transaction"])
def test_sigkill_mid_run_then_rerun_equals_one_clean_run(database_url, second_database_url, vault, kill_point):
    child = _start_child(database_url, *kill_point)
    _wait_paused(child)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)

    killed_state = _state(database_url)
    assert killed_state["cardholders"] == [] and killed_state["budgets"] == []  # as before the run

    rerun = _start_child(database_url)
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    assert "succeeded" in out

    assert _state(database_url) == _clean_run_state(second_database_url, vault)
    db = Database(database_url)
    try:
        with db.read() as session:
            statuses = session.execute(select(SyncRun.status, SyncRun.reason).order_by(SyncRun.id)).all()
    finally:
        db.dispose()
    assert [status for status, _ in statuses] == [SyncStatus.FAILED, SyncStatus.SUCCEEDED]
    assert "interrupted" in statuses[0].reason


def test_two_syncs_started_together_one_runs_one_names_the_holder(database_url, tmp_path):
    gate = tmp_path / "go"
    children = [_start_child(database_url, "--pause-after", "50", "--gate", str(gate)) for _ in range(2)]
    # The one without the lock gives up at once; the holder pauses until the gate opens.
    finished = []
    for _ in range(200):
        finished = [child for child in children if child.poll() is not None]
        if finished:
            break
        time.sleep(0.05)
    assert len(finished) == 1, "one of the two should have been turned away"
    loser = finished[0]
    winner = next(child for child in children if child is not loser)
    _wait_paused(winner)
    _, loser_err = loser.communicate()
    assert loser.returncode == 75
    assert f":{winner.pid}" in loser_err and "already being synced" in loser_err
    gate.touch()
    out, err = winner.communicate(timeout=120)
    assert winner.returncode == 0, err
    assert _state(database_url)["locks"] == 0


def test_a_lock_row_of_a_dead_process_of_another_host_is_taken_over_at_once(database_url, vault):
    """A second container sharing the SQLite volume was killed mid-run: its host name and process id mean
    nothing here, but the lock it held died with it (the kernel's flock; PostgreSQL's advisory lock), so the
    next run takes the row over instead of waiting out STALE_AFTER."""
    from adapter.models import utcnow

    db = Database(database_url)
    try:
        with db.write() as session:
            session.add(SyncLock(source="gemeente", holder="sync-container-2:1", acquired_at=utcnow()))
        result = run_sync(db, vault, "gemeente", household_records(5), settings=SYNC_SETTINGS, rules=SIMPLE_RULES,
                          today=TODAY)
        assert result.status == SyncStatus.SUCCEEDED
        with db.read() as session:
            assert session.execute(select(func.count()).select_from(SyncLock)).scalar_one() == 0
    finally:
        db.dispose()


@pytest.mark.postgres
def test_the_advisory_lock_outlives_a_server_that_ends_idle_sessions(postgres_url):
    """The lock's connection idles for the whole run. Under idle_session_timeout (here 300 ms, as a DBA may set
    it for the database) the server would end that session, and free the lock, in the middle of a long sync."""
    from adapter import sync_lock

    from sqlalchemy import text

    strict = Database(f"{postgres_url}?options=-c%20idle_session_timeout%3D300")
    other = Database(postgres_url)
    try:
        held = sync_lock.process_lock(strict, "gemeente")
        assert held is not None and held.try_acquire()
        time.sleep(1.0)
        second = sync_lock.process_lock(other, "gemeente")
        assert not second.try_acquire(), "the idle session was ended, and the source's lock with it"
        held.release()
        assert second.try_acquire()
        second.release()
        with strict.engine.connect() as pooled:  # the lock's connection, back in the pool, is under the timeout again
            assert pooled.execute(text("SHOW idle_session_timeout")).scalar_one() == "300ms"
    finally:
        strict.dispose()
        other.dispose()


@pytest.mark.postgres
def test_a_lock_whose_connection_died_is_released_without_an_error(postgres_url, caplog):
    """The run is over and stored: a server restart or a dropped connection before the unlock must not turn it
    into a reported failure, nor put a connection still holding the lock back in the pool."""
    from sqlalchemy import text

    from adapter import sync_lock

    db = Database(postgres_url)
    try:
        held = sync_lock.process_lock(db, "gemeente")
        assert held is not None and held.try_acquire()
        backend = held._connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with db.engine.connect() as admin:
            admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
        held.release()  # no exception
        assert "could not be released" in caplog.text
        again = sync_lock.process_lock(db, "gemeente")
        assert again.try_acquire()
        again.release()
    finally:
        db.dispose()
