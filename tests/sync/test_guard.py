"""The mass-change guard: suspicious runs are refused before anything changes; --force after a human looked."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from adapter import sync_history
from adapter.audit import AuditEntry
from adapter.models import Cardholder, Pass, SyncRun, SyncStatus
from adapter.sync import run_sync
from tests.sync.records import SIMPLE_RULES, SYNC_SETTINGS, TODAY, blocked, household_records, rejected

SOURCE = "gemeente"


def _sync(db, vault, records, **options):
    return run_sync(db, vault, SOURCE, records, settings=SYNC_SETTINGS, rules=SIMPLE_RULES,
                    today=TODAY + timedelta(days=1), **options)


def _state(db):
    with db.read() as session:
        return (
            session.execute(select(Pass.pass_number, Pass.status, Pass.missing_since, Pass.valid_until)
                            .order_by(Pass.pass_number)).all(),
            session.execute(select(Cardholder.source_key, Cardholder.status, Cardholder.content_hash)
                            .order_by(Cardholder.source_key)).all(),
        )


@pytest.fixture
def synced(db, vault):
    records = household_records(200)
    first = run_sync(db, vault, SOURCE, records, settings=SYNC_SETTINGS, rules=SIMPLE_RULES, today=TODAY)
    assert first.status == SyncStatus.SUCCEEDED
    return records


def _twenty_percent_vanish(records):
    return records[: int(len(records) * 0.8)]


def _truncated(records):
    return records[: len(records) // 3]


def _many_blocked(records):
    return [blocked(record) if index % 10 == 0 else record for index, record in enumerate(records)]


def _many_rejected(records):
    return records + rejected(len(records) // 10)


@pytest.mark.parametrize(("change", "reason_says"), [
    (lambda records: [], "no records"),
    (_truncated, "truncated"),
    (_twenty_percent_vanish, "newly absent"),
    (_many_blocked, "newly blocked"),
    (_many_rejected, "records rejected"),
], ids=["empty", "truncated", "20pct-vanish", "10pct-blocked", "10pct-rejected"])
def test_a_suspicious_run_is_refused_and_changes_nothing(db, vault, synced, change, reason_says):
    before = _state(db)
    result = _sync(db, vault, change(synced))
    assert result.status == SyncStatus.REFUSED
    assert reason_says in result.reason and "--force" in result.reason
    assert _state(db) == before
    with db.read() as session:
        latest = sync_history.recent_runs(session, source=SOURCE, limit=1)[0]
    assert (latest.run_id, latest.status) == (result.run_id, "refused")
    assert reason_says in latest.reason


def test_force_applies_a_refused_run_and_leaves_an_audit_record(db, vault, synced):
    survivors = _twenty_percent_vanish(synced)
    refused = _sync(db, vault, survivors)
    assert refused.status == SyncStatus.REFUSED
    forced = _sync(db, vault, survivors, force=True, actor="operator:alice")
    assert forced.status == SyncStatus.SUCCEEDED and forced.forced
    assert forced.missing == len(synced) - len(survivors)
    with db.read() as session:
        entry = session.execute(select(AuditEntry).where(AuditEntry.action == "sync.forced")).scalar_one()
        assert (entry.actor, entry.object_ref) == ("operator:alice", f"sync_run:{forced.run_id}")
        assert session.get(SyncRun, forced.run_id).forced


def test_a_small_change_passes_the_guard(db, vault, synced):
    result = _sync(db, vault, synced[:-3])  # well under 5%
    assert result.status == SyncStatus.SUCCEEDED
    assert result.missing == 3


def test_dry_run_reports_what_would_change_and_changes_nothing(db, vault, synced):
    before = _state(db)
    changed = synced[:-2] + household_records(3, start=5000)
    result = _sync(db, vault, changed, dry_run=True)
    assert result.status == SyncStatus.DRY_RUN
    assert (result.created, result.missing) == (len(household_records(3, start=5000)), 2)
    assert result.budgets_granted > 0  # the grants it would make, counted in a rolled-back transaction
    assert _state(db) == before
    details = [detail for sample in result.samples.values() for _record_key, detail in sample]
    assert all("999" not in detail for detail in details)
    assert any(detail.endswith("BSN *********") for detail in details)  # BSN masked


def test_a_rejected_line_of_a_stored_pass_counts_once_not_also_as_that_pass_missing(db, vault):
    """40 households, 100 passes; 5 of their lines come back rejected (a birth date in the future): 5 of 100 is
    the 5% the guard allows, so the run goes through. Before, each counted as rejected and its pass as newly
    missing: 10 of 100, refused."""
    import dataclasses

    from adapter.settings import SyncSettings
    from adapter.validation import validate_record

    settings = SyncSettings(max_change_share=0.05)
    records = household_records(40)
    assert len(records) == 100
    first = run_sync(db, vault, SOURCE, records, settings=settings, rules=SIMPLE_RULES, today=TODAY)
    assert first.status == SyncStatus.SUCCEEDED
    broken = [validate_record(dataclasses.replace(record, birth_date=TODAY + timedelta(days=400)), TODAY)
              for record in records[:5]]
    assert all(type(line).__name__ == "RejectedRecord" and line.pass_number for line in broken)
    night = run_sync(db, vault, SOURCE, broken + records[5:], settings=settings, rules=SIMPLE_RULES,
                     today=TODAY + timedelta(days=1))
    assert night.status == SyncStatus.SUCCEEDED, night.reason
    assert (night.rejected, night.missing) == (5, 5)
    # A sixth goes over the line, counted once each.
    sixth = [validate_record(dataclasses.replace(records[5], birth_date=TODAY + timedelta(days=400)), TODAY)]
    refused = run_sync(db, vault, SOURCE, broken + sixth + records[6:], settings=settings, rules=SIMPLE_RULES,
                       today=TODAY + timedelta(days=2))
    assert refused.status == SyncStatus.REFUSED and "would take 6 of 100 known passes" in refused.reason
    assert "6 records rejected, 1 of them lines of those absent passes, counted once" in refused.reason
    assert "1 newly absent" in refused.reason


def test_the_passes_a_forced_run_let_go_are_deactivated_at_their_grace_end_without_a_second_refusal(db, vault,
                                                                                                    synced):
    """The operator looked and forced the run in which 20% vanished; three nights on, their deactivation is the
    end of the absence that run accepted, not a new mass change: the night goes through, and its new
    cardholders are written."""
    survivors = _twenty_percent_vanish(synced)
    forced = _sync(db, vault, survivors, force=True, actor="operator:alice")
    assert forced.status == SyncStatus.SUCCEEDED
    gone = len(synced) - len(survivors)
    newcomers = household_records(2, start=7000)
    grace_end = run_sync(db, vault, SOURCE, survivors + newcomers, settings=SYNC_SETTINGS, rules=SIMPLE_RULES,
                         today=TODAY + timedelta(days=1 + SYNC_SETTINGS.grace_nights))
    assert grace_end.status == SyncStatus.SUCCEEDED, grace_end.reason
    assert (grace_end.deactivated, grace_end.created) == (gone, len(newcomers))
    # A new mass change on top is still refused, and says what it did not count.
    again = run_sync(db, vault, SOURCE, _twenty_percent_vanish(survivors), settings=SYNC_SETTINGS,
                     rules=SIMPLE_RULES, today=TODAY + timedelta(days=2 + SYNC_SETTINGS.grace_nights))
    assert again.status == SyncStatus.REFUSED and "after their grace are not counted" in again.reason


def test_a_first_load_that_rejects_most_of_its_records_is_refused_and_stores_nothing(db, vault):
    """A first load has no known passes to weigh its changes against: a mapping that did not fit the export (a
    date written otherwise) rejected every line, and the run 'succeeded' with none of the city's children."""
    records = household_records(20)
    mostly_rejected = records[:3] + rejected(len(records))
    refused = _sync(db, vault, mostly_rejected)
    assert refused.status == SyncStatus.REFUSED
    assert "first load would reject" in refused.reason and "sync show" in refused.reason
    assert "--force" in refused.reason
    assert _state(db) == ([], [])
    forced = _sync(db, vault, mostly_rejected, force=True, actor="operator:alice")
    assert forced.status == SyncStatus.SUCCEEDED and forced.created == 3


def test_a_first_load_with_a_few_rejected_records_is_applied(db, vault):
    records = household_records(100)
    result = _sync(db, vault, records + rejected(len(records) // 50))
    assert result.status == SyncStatus.SUCCEEDED and result.created == len(records)
