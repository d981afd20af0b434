"""Retention: personal data of long-gone cardholders removed, money history and totals intact."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner
from sqlalchemy import event, func, select, update

from adapter import audit, ledger, retention
from adapter.cli import cli
from adapter.db import Database
from adapter.lookup import find_cardholder_by_bsn
from adapter.models import Budget, Cardholder, HolderStatus, Household, LedgerEntry, Pass
from adapter.personal import PersonalFields, open_sealed, seal
from tests import factories
from tests.conftest import make_settings
from tests.fixture_personal_data import TEST_BSNS

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)


def _deactivate(db: Database, cardholder_id: int, at: datetime) -> None:
    with db.write() as session:
        session.execute(update(Cardholder).where(Cardholder.id == cardholder_id)
                        .values(status=HolderStatus.INACTIVE, deactivated_at=at))


def _totals(db: Database) -> tuple[int, int, int]:
    with db.read() as session:
        return (session.execute(select(func.sum(Budget.balance_cents))).scalar_one(),
                session.execute(select(func.sum(LedgerEntry.amount_cents))).scalar_one(),
                session.execute(select(func.count()).select_from(LedgerEntry)).scalar_one())


def test_cutoff_counts_calendar_months():
    assert retention.cutoff_for(NOW, 24) == datetime(2024, 11, 29, 12, 0, tzinfo=timezone.utc)
    assert retention.cutoff_for(datetime(2026, 3, 31, tzinfo=timezone.utc), 1) == \
        datetime(2026, 2, 28, tzinfo=timezone.utc)


def test_only_inactive_holders_past_retention_are_pseudonymised(tmp_path, db, vault):
    settings = make_settings(tmp_path, db.url)
    gone = factories.child_with_budget(db, vault, bsn=TEST_BSNS[2], amount_cents=5_000)
    recent = factories.child_with_budget(db, vault, bsn=TEST_BSNS[3])
    active = factories.child_with_budget(db, vault, bsn=TEST_BSNS[4])
    merchant = factories.merchant(db)
    spent = ledger.redeem(db, ledger.RedemptionRequest(
        merchant_id=merchant.merchant_id, budget_id=gone.budget_id, pass_id=gone.pass_id, amount_cents=1_200,
        actor=f"merchant:{merchant.merchant_id}", idempotency_key="r1"))
    assert spent.status == "redeemed", spent
    _deactivate(db, gone.cardholder_id, NOW - timedelta(days=2 * 365 + 10))
    _deactivate(db, recent.cardholder_id, NOW - timedelta(days=300))
    totals_before = _totals(db)

    dry = retention.apply(db, settings, NOW, dry_run=True)
    assert (dry.cardholders, dry.passes, dry.households) == (1, 1, 1)
    with db.read() as session:
        assert session.get(Cardholder, gone.cardholder_id).pseudonymised_at is None  # a dry run changes nothing

    report = retention.apply(db, settings, NOW, actor="operator:test")
    assert (report.cardholders, report.passes, report.households) == (1, 1, 1)
    with db.read() as session:
        holder = session.get(Cardholder, gone.cardholder_id)
        personal = [getattr(holder, column.name) for column in Cardholder.__table__.columns
                    if column.name.endswith("_encrypted")]
        assert personal == [None] and holder.bsn_index is None and holder.content_hash is None
        assert holder.pseudonymised_at == NOW and holder.source_key == f"retained-{holder.id}"
        assert session.get(Pass, gone.pass_id).pass_number == f"retained-{gone.pass_id}"
        assert session.get(Household, holder.household_id).source_key == f"retained-{holder.household_id}"
        assert find_cardholder_by_bsn(session, vault, TEST_BSNS[2]) is None
        for kept in (recent, active):
            assert open_sealed(vault, session.get(Cardholder, kept.cardholder_id).personal_encrypted).bsn in TEST_BSNS
        entry = session.execute(select(audit.AuditEntry).where(audit.AuditEntry.action == "retention.applied")
                                ).scalar_one()
        assert json.loads(entry.details_json)["cardholders"] == 1 and entry.actor == "operator:test"
        assert ledger.verify(session) == []
    assert _totals(db) == totals_before  # budgets and ledger untouched

    again = retention.apply(db, settings, NOW)
    assert (again.cardholders, again.passes, again.households) == (0, 0, 0)


def test_the_cardholders_of_a_source_taken_out_of_the_configuration_go_once_no_run_read_them_for_as_long(
        tmp_path, db, vault):
    """A municipality that changed systems takes the old source out: never synced again, its cardholders stayed
    active and kept their personal data for good. Not before retention's months have passed since a run last
    read them, and never those of a configured source."""
    from adapter.models import SyncRun, SyncStatus

    from tests.conftest import DEMO_SOURCE

    # A paused source is still the municipality's: its cardholders wait for it to be switched on again.
    settings = make_settings(tmp_path, db.url, sources={"demo": DEMO_SOURCE,
                                                        "gepauzeerd": {**DEMO_SOURCE, "enabled": False}})
    children = {name: factories.child_with_budget(db, vault, bsn=bsn)
                for name, bsn in (("old_system", TEST_BSNS[2]), ("read_lately", TEST_BSNS[3]),
                                  ("configured", TEST_BSNS[4]), ("written_lately", TEST_BSNS[5]),
                                  ("paused", TEST_BSNS[6]))}
    long_ago, lately = NOW - timedelta(days=2 * 365 + 10), NOW - timedelta(days=40)
    with db.write() as session:
        for name, source in (("old_system", "oud-systeem"), ("read_lately", "hernoemd"), ("configured", "demo"),
                             ("written_lately", "nog-een"), ("paused", "gepauzeerd")):
            session.execute(update(Cardholder).where(Cardholder.id == children[name].cardholder_id).values(
                source=source, updated_at=lately if name == "written_lately" else long_ago))
        session.add_all([SyncRun(source="oud-systeem", status=SyncStatus.SUCCEEDED, started_at=long_ago),
                         SyncRun(source="hernoemd", status=SyncStatus.SUCCEEDED, started_at=lately)])

    assert retention.apply(db, settings, NOW, dry_run=True).cardholders == 1
    report = retention.apply(db, settings, NOW)
    assert (report.cardholders, report.passes) == (1, 1)
    with db.read() as session:
        gone = session.get(Cardholder, children["old_system"].cardholder_id)
        assert gone.personal_encrypted is None and gone.bsn_index is None and gone.pseudonymised_at == NOW
        for name in ("read_lately", "configured", "written_lately", "paused"):
            assert session.get(Cardholder, children[name].cardholder_id).personal_encrypted is not None, name


def test_household_keeps_its_key_while_a_member_keeps_personal_data(tmp_path, sqlite_url, vault):
    db = Database(sqlite_url)
    first = factories.child_with_budget(db, vault)
    with db.write() as session:
        household_id = session.get(Cardholder, first.cardholder_id).household_id
        sibling = Cardholder(household_id=household_id, source="test", source_key="sibling",
                             personal_encrypted=seal(vault, PersonalFields(bsn=TEST_BSNS[5])), bsn_index=vault.blind_index(TEST_BSNS[5]))
        session.add(sibling)
    _deactivate(db, first.cardholder_id, NOW - timedelta(days=800))
    report = retention.apply(db, make_settings(tmp_path, sqlite_url), NOW)
    assert (report.cardholders, report.households) == (1, 0)
    with db.read() as session:
        assert not session.get(Household, household_id).source_key.startswith("retained-")
    db.dispose()


def test_cli_retention_apply(tmp_path, sqlite_url, vault):
    db = Database(sqlite_url)
    gone = factories.child_with_budget(db, vault)
    _deactivate(db, gone.cardholder_id, datetime(2020, 1, 1, tzinfo=timezone.utc))
    config = tmp_path / "adapter.yaml"
    config.write_text(json.dumps({"data_dir": str(tmp_path / "var"), "database": {"url": sqlite_url},
                                  "retention": {"months": 12}}), encoding="utf-8")
    runner = CliRunner()
    dry = runner.invoke(cli, ["--config", str(config), "retention", "apply", "--dry-run"])
    assert dry.exit_code == 0 and "would pseudonymise 1 cardholder(s)" in dry.output
    assert "(retention 12 months)" in dry.output
    done = runner.invoke(cli, ["--config", str(config), "retention", "apply"])
    assert done.exit_code == 0 and "pseudonymised 1 cardholder(s), 1 pass(es), 1 household(s)" in done.output
    db.dispose()


def _many_households(db: Database, households: int, members: int, kept_active_in: int) -> None:
    """``households`` households of ``members`` cardholders with a pass each, all long gone except one member in
    each of the first ``kept_active_in`` households."""
    gone_at = NOW - timedelta(days=3 * 365)
    with db.write() as session:
        session.execute(Household.__table__.insert(), [
            {"id": household, "source": "bulk", "source_key": f"H{household}", "created_at": NOW, "updated_at": NOW}
            for household in range(1, households + 1)])
        holders = [{"id": household * members + member, "household_id": household, "source": "bulk",
                    "source_key": f"C{household}-{member}", "personal_encrypted": "token", "bsn_index": None,
                    "status": HolderStatus.ACTIVE if household <= kept_active_in and member == 0
                    else HolderStatus.INACTIVE,
                    "deactivated_at": None if household <= kept_active_in and member == 0 else gone_at,
                    "created_at": NOW, "updated_at": NOW}
                   for household in range(1, households + 1) for member in range(members)]
        session.execute(Cardholder.__table__.insert(), holders)
        session.execute(Pass.__table__.insert(), [
            {"id": holder["id"], "cardholder_id": holder["id"], "pass_number": f"64000000{holder['id']:08d}",
             "status": "active", "created_at": NOW, "updated_at": NOW} for holder in holders])


def test_a_dry_run_counts_any_number_of_due_cardholders_in_the_database(tmp_path, db):
    """The first run in a large city finds tens of thousands due: PostgreSQL takes at most 65,535 parameters in one
    statement, so the dry run must not send their ids back to it (it did, and stopped with a traceback)."""
    _many_households(db, households=400, members=3, kept_active_in=100)
    settings = make_settings(tmp_path, db.url)
    parameters_sent: list[int] = []

    def count_parameters(_conn, _cursor, _statement, parameters, _context, _executemany):  # type: ignore[no-untyped-def]
        parameters_sent.append(len(parameters or ()))

    event.listen(db.engine, "before_cursor_execute", count_parameters)
    try:
        dry = retention.apply(db, settings, NOW, dry_run=True)
    finally:
        event.remove(db.engine, "before_cursor_execute", count_parameters)
    assert max(parameters_sent) < 100, parameters_sent  # not one per due cardholder
    done = retention.apply(db, settings, NOW)
    assert (dry.cardholders, dry.passes, dry.households) == (done.cardholders, done.passes, done.households) \
        == (1100, 1100, 300)


def _old_request(db: Database, vault, child, merchant, key: str, at: datetime) -> None:
    """A redemption through the counter with its keyed request fingerprint, dated ``at``."""
    from adapter import counter
    from adapter.crypto import request_fingerprint
    from adapter.models import IdempotencyRecord, Merchant

    with db.read() as session:
        shop = session.get(Merchant, merchant.merchant_id)
    fingerprint = request_fingerprint(vault.hashes, "POST /v1/redemptions",
                                      {"pass_number": child.pass_number, "amount_cents": 100})
    outcome = counter.redeem(db, shop, child.pass_number, 100, budget_id=child.budget_id, idempotency_key=key,
                             fingerprint=fingerprint, today=at.date())
    assert outcome.succeeded
    with db.write() as session:
        session.execute(update(IdempotencyRecord).where(IdempotencyRecord.key == key).values(created_at=at))


def test_retention_deletes_old_request_records_and_leaves_nothing_of_the_removed_values_on_disk(tmp_path, sqlite_url,
                                                                                                  vault):
    """SQLite: the database file and its write-ahead log, read as bytes after retention, hold neither the pass
    number nor the sealed personal fields of the pseudonymised cardholder; the idempotency records from before
    the cut-off are gone, the recent one stays."""
    from adapter.models import IdempotencyRecord

    db = Database(sqlite_url)
    settings = make_settings(tmp_path, sqlite_url)
    gone = factories.child_with_budget(db, vault, bsn=TEST_BSNS[2], amount_cents=5_000,
                                       period=(datetime(2023, 1, 1).date(), datetime(2027, 12, 31).date()))
    stays = factories.child_with_budget(db, vault, bsn=TEST_BSNS[3])
    merchant = factories.merchant(db)
    _old_request(db, vault, gone, merchant, "long-ago", NOW - timedelta(days=3 * 365))
    _old_request(db, vault, stays, merchant, "yesterday", NOW - timedelta(days=1))
    with db.read() as session:
        token = session.get(Cardholder, gone.cardholder_id).personal_encrypted
    _deactivate(db, gone.cardholder_id, NOW - timedelta(days=2 * 365 + 10))
    files = [tmp_path / name for name in sorted(p.name for p in tmp_path.iterdir()) if ".db" in name]
    on_disk = b"".join(path.read_bytes() for path in files)
    assert gone.pass_number.encode() in on_disk and token.encode() in on_disk  # the check can fail

    report = retention.apply(db, settings, NOW)
    assert (report.cardholders, report.request_records, report.scrubbed) == (1, 1, True)
    with db.read() as session:
        assert session.execute(select(IdempotencyRecord.key)).scalars().all() == ["yesterday"]
    on_disk = b"".join(path.read_bytes() for path in files if path.exists())
    assert gone.pass_number.encode() not in on_disk
    assert token.encode() not in on_disk and token[:40].encode() not in on_disk
    assert stays.pass_number.encode() in on_disk  # what stays is still there
    db.dispose()


def test_retention_vacuums_what_it_changed_on_postgresql(tmp_path, postgres_url, vault):
    """PostgreSQL keeps a changed row's old version until a VACUUM: retention runs one on what it changed."""
    from sqlalchemy import text

    db = Database(postgres_url)
    gone = factories.child_with_budget(db, vault, bsn=TEST_BSNS[2])
    _deactivate(db, gone.cardholder_id, NOW - timedelta(days=2 * 365 + 10))
    with db.read() as session:
        session.execute(text("SELECT pg_stat_clear_snapshot()"))
        before = dict(session.execute(text(
            "SELECT relname, coalesce(vacuum_count, 0) FROM pg_stat_user_tables WHERE relname IN "
            "('cardholders', 'passes', 'households', 'idempotency_records')")).all())
    report = retention.apply(db, make_settings(tmp_path, postgres_url), NOW)
    assert report.cardholders == 1 and report.scrubbed
    with db.read() as session:
        after = dict(session.execute(text(
            "SELECT relname, coalesce(vacuum_count, 0) FROM pg_stat_user_tables WHERE relname IN "
            "('cardholders', 'passes', 'households', 'idempotency_records')")).all())
    assert all(after[name] > before.get(name, 0) for name in ("cardholders", "passes", "households",
                                                               "idempotency_records")), (before, after)
    db.dispose()


def test_retention_says_when_an_open_snapshot_kept_old_versions_on_postgresql(tmp_path, postgres_url, vault):
    """A VACUUM cannot remove what a transaction still open may see (a long report): retention says so instead of
    reporting the values gone."""
    from sqlalchemy import create_engine, text

    db = Database(postgres_url)
    gone = factories.child_with_budget(db, vault, bsn=TEST_BSNS[2])
    _deactivate(db, gone.cardholder_id, NOW - timedelta(days=2 * 365 + 10))
    reader = create_engine(postgres_url, isolation_level="REPEATABLE READ")
    try:
        with reader.connect() as report:
            report.execute(text("SELECT count(*) FROM cardholders")).scalar_one()  # its snapshot is taken
            kept = retention.apply(db, make_settings(tmp_path, postgres_url), NOW)
            assert kept.cardholders == 1 and kept.scrubbed is False
        assert db.scrub_removed(["cardholders", "passes", "households", "idempotency_records"])  # then it can
    finally:
        reader.dispose()
        db.dispose()


def test_a_rerun_after_retention_stopped_in_its_scrub_still_scrubs(tmp_path, sqlite_url, vault, monkeypatch):
    """The pseudonymising batches committed, then the run stopped while making the old versions unreadable (the
    scheduler restarted during it): the next run has no cardholder left to pseudonymise, and must still leave
    neither the pass number nor the sealed personal fields on disk."""
    db = Database(sqlite_url)
    settings = make_settings(tmp_path, sqlite_url)
    gone = factories.child_with_budget(db, vault, bsn=TEST_BSNS[2])
    with db.read() as session:
        token = session.get(Cardholder, gone.cardholder_id).personal_encrypted
    _deactivate(db, gone.cardholder_id, NOW - timedelta(days=2 * 365 + 10))
    with monkeypatch.context() as patched:
        def stopped(_tables):  # type: ignore[no-untyped-def]
            raise KeyboardInterrupt

        patched.setattr(db, "scrub_removed", stopped)
        with pytest.raises(KeyboardInterrupt):
            retention.apply(db, settings, NOW)
    files = [tmp_path / name for name in sorted(p.name for p in tmp_path.iterdir()) if ".db" in name]
    on_disk = b"".join(path.read_bytes() for path in files if path.exists())
    assert gone.pass_number.encode() in on_disk or token.encode() in on_disk  # the check can fail

    rerun = retention.apply(db, settings, NOW)
    assert (rerun.cardholders, rerun.scrubbed) == (0, True)
    on_disk = b"".join(path.read_bytes() for path in files if path.exists())
    assert gone.pass_number.encode() not in on_disk and token[:40].encode() not in on_disk
    db.dispose()
