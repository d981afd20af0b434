"""The nightly sync: upserts keyed on source ids, unchanged runs change nothing, absence is not deletion."""

from __future__ import annotations

import dataclasses
import gc
import time
from datetime import timedelta

import pytest
from sqlalchemy import event, func, select

from adapter import ledger
from adapter.models import Budget, Cardholder, HolderStatus, Household, LedgerEntry, Pass, PassState, SyncStatus
from adapter.personal import PersonalFields, open_sealed
from adapter.sync import SYNC_FULL_COLLECTION_AFTER, SYNC_GC_THRESHOLD, run_sync
from tests.sync.records import SIMPLE_RULES, SYNC_SETTINGS, TODAY, household_records


def _sync(db, vault, records, *, today=TODAY, rules=SIMPLE_RULES, **options):
    return run_sync(db, vault, "gemeente", records, settings=options.pop("settings", SYNC_SETTINGS), rules=rules,
                    today=today, **options)


def _count(db, model) -> int:
    with db.read() as session:
        return session.execute(select(func.count()).select_from(model)).scalar_one()


def test_a_second_night_on_the_same_records_changes_nothing_and_grants_nothing(db, vault):
    records = household_records(1000)
    first = _sync(db, vault, records)
    assert first.status == SyncStatus.SUCCEEDED
    assert first.created == len(records) == first.records_read
    assert _count(db, Household) == 1000
    assert _count(db, Cardholder) == len(records)
    children = sum(1 for record in records if record.is_child)
    # Every child is 0-17: clothing, plus exactly one of the school budgets when 4-17 on 1 August.
    assert first.budgets_granted == _count(db, Budget) >= children
    entries_after_first = _count(db, LedgerEntry)
    with db.read() as session:
        cardholders_before = session.execute(select(Cardholder.id, Cardholder.personal_encrypted, Cardholder.updated_at)
                                             .order_by(Cardholder.id)).all()

    second = _sync(db, vault, records, today=TODAY + timedelta(days=1))

    assert second.status == SyncStatus.SUCCEEDED
    assert (second.created, second.updated, second.unchanged) == (0, 0, len(records))
    assert second.budgets_granted == 0
    assert _count(db, LedgerEntry) == entries_after_first
    with db.read() as session:
        # Not decrypted and rewritten: the very same ciphertext and timestamps.
        assert session.execute(select(Cardholder.id, Cardholder.personal_encrypted, Cardholder.updated_at)
                               .order_by(Cardholder.id)).all() == cardholders_before
        assert ledger.verify(session) == []


def test_a_changed_record_is_updated_and_only_that_one(db, vault):
    records = household_records(20)
    _sync(db, vault, records)
    changed = list(records)
    changed[3] = dataclasses.replace(changed[3], surname="de Vries")
    result = _sync(db, vault, changed)
    assert (result.updated, result.created, result.unchanged) == (1, 0, len(records) - 1)
    with db.read() as session:
        holder = session.execute(select(Cardholder).where(Cardholder.source_key == changed[3].cardholder_id)
                                 ).scalar_one()
        assert open_sealed(vault, holder.personal_encrypted).surname == "de Vries"
        assert holder.bsn_index == vault.blind_index(changed[3].bsn)


def test_new_rows_go_in_as_one_insert_and_the_updates_after_it(db, vault, monkeypatch):
    """The new cardholders and passes of a night go in as one insert each, however many batches they fill
    (on PostgreSQL one COPY, which the server works through while the sync makes the next rows); the
    updates of the same night wait for it, and every one of them is still made."""
    import adapter.sync as sync

    monkeypatch.setattr(sync, "BATCH_SIZE", 2)
    records = household_records(6)
    _sync(db, vault, records)
    inserts: list[str] = []
    insert_tuples = sync.insert_tuples

    def counted(session, table, *args, **kwargs):  # type: ignore[no-untyped-def]
        inserts.append(table.name)
        return insert_tuples(session, table, *args, **kwargs)

    monkeypatch.setattr(sync, "insert_tuples", counted)
    tomorrow = [dataclasses.replace(record, surname=f"Veranderd{index}") if index % 2 else record
                for index, record in enumerate(records)]
    tomorrow[0] = dataclasses.replace(tomorrow[0], valid_until=tomorrow[0].valid_until - timedelta(days=30))
    tomorrow[2] = dataclasses.replace(tomorrow[2], valid_from=tomorrow[2].valid_from + timedelta(days=1))
    tomorrow += household_records(4, start=100)
    result = _sync(db, vault, tomorrow)

    changed = {index for index in range(len(records)) if index % 2} | {0, 2}
    assert (result.created, result.updated) == (len(tomorrow) - len(records), len(changed)) == (10, 9)
    assert inserts.count("cardholders") == 1 and inserts.count("passes") == 1
    with db.read() as session:
        stored = {holder.source_key: open_sealed(vault, holder.personal_encrypted).surname
                  for holder in session.execute(select(Cardholder)).scalars()}
        passes = {card.pass_number: (card.status, card.valid_from, card.valid_until)
                  for card in session.execute(select(Pass)).scalars()}
    assert stored == {record.cardholder_id: record.surname for record in tomorrow}
    assert all(passes[record.pass_number] == (PassState.ACTIVE, record.valid_from, record.valid_until)
               for record in tomorrow)
    assert len(passes) == len(tomorrow)


def test_absence_marks_missing_and_deactivates_only_after_the_grace_period(db, vault):
    records = household_records(100)
    _sync(db, vault, records)
    gone = records[0]
    remaining = records[1:]
    for night in range(SYNC_SETTINGS.grace_nights):
        result = _sync(db, vault, remaining, today=TODAY + timedelta(days=night + 1))
        assert result.status == SyncStatus.SUCCEEDED
        with db.read() as session:
            card = session.execute(select(Pass).where(Pass.pass_number == gone.pass_number)).scalar_one()
            holder = session.get(Cardholder, card.cardholder_id)
            assert card.status == PassState.ACTIVE  # still works at the counter during the grace period
            assert card.missing_since == TODAY + timedelta(days=1)
            assert holder.status == HolderStatus.MISSING
    result = _sync(db, vault, remaining, today=TODAY + timedelta(days=SYNC_SETTINGS.grace_nights + 1))
    assert result.deactivated == 1
    with db.read() as session:
        card = session.execute(select(Pass).where(Pass.pass_number == gone.pass_number)).scalar_one()
        assert card.status == PassState.INACTIVE
        assert session.get(Cardholder, card.cardholder_id).status == HolderStatus.INACTIVE
    # Back in the export: active again, same rows, nothing deleted in between.
    back = _sync(db, vault, records, today=TODAY + timedelta(days=10))
    assert back.updated == 1 and back.created == 0
    with db.read() as session:
        card = session.execute(select(Pass).where(Pass.pass_number == gone.pass_number)).scalar_one()
        assert (card.status, card.missing_since) == (PassState.ACTIVE, None)
        assert session.get(Cardholder, card.cardholder_id).status == HolderStatus.ACTIVE


def test_large_batches_are_encrypted_on_several_cores_with_the_same_result(sqlite_url, vault, monkeypatch):
    import adapter.sealing as sealing
    from adapter.db import Database

    monkeypatch.setattr(sealing, "PARALLEL_FROM", 10)
    monkeypatch.setattr(sealing, "CHUNK", 7)
    monkeypatch.setattr(sealing.os, "cpu_count", lambda: 2)
    records = household_records(30)
    db = Database(sqlite_url)
    try:
        assert _sync(db, vault, records).created == len(records)
        with db.read() as session:
            stored = session.execute(select(Cardholder.source_key, Cardholder.personal_encrypted,
                                            Cardholder.bsn_index).order_by(Cardholder.id)).all()
    finally:
        db.dispose()
    assert [(key, open_sealed(vault, token), index) for key, token, index in stored] == [
        (record.cardholder_id, PersonalFields.of(record), record.bsn and vault.blind_index(record.bsn))
        for record in records]


def test_the_collector_runs_less_often_during_a_sync_and_as_before_afterwards(db, vault):
    """A sync raises the young-generation threshold while it reads (its rows hold no cycles) and
    restores it, also when the sync fails: the scheduler process runs on after a sync."""
    before = gc.get_threshold()
    seen: list[tuple[int, int, int]] = []

    def watched(records):
        for record in records:
            seen.append(gc.get_threshold())
            yield record

    _sync(db, vault, watched(household_records(3)))
    assert seen and set(seen) == {(SYNC_GC_THRESHOLD, before[1], SYNC_FULL_COLLECTION_AFTER)}
    assert gc.get_threshold() == before

    def failing():
        yield from watched(household_records(1))
        raise RuntimeError("source went away")

    with pytest.raises(RuntimeError):
        _sync(db, vault, failing())
    assert gc.get_threshold() == before


def test_overlapping_syncs_leave_the_collector_as_they_found_it():
    """Two scheduler threads: A starts, B starts, A ends, B ends. Restoring per sync would leave B's raised value."""
    from adapter.sync import fewer_collections

    before = gc.get_threshold()
    first, second = fewer_collections(), fewer_collections()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert gc.get_threshold()[0] == SYNC_GC_THRESHOLD  # B still runs
    second.__exit__(None, None, None)
    assert gc.get_threshold() == before


def test_no_plaintext_record_is_held_once_the_reading_is_done(db, vault, monkeypatch):
    """The planner hands each new or changed record to the sealer and keeps none: when the apply starts,
    no ``CardholderRecord`` (names, BSN, birth date in plain text) is left in the process."""
    import adapter.sealing as sealing
    from adapter.records import CardholderRecord

    monkeypatch.setattr(sealing, "CHUNK", 40)  # 750 records: the last chunk is a partial one

    marker = "held-test line"

    def exported():  # made as they are read, as a connector does: the test holds none of them itself
        for start in range(0, 300, 10):
            for record in household_records(10, start=start):
                yield dataclasses.replace(record, source_key=f"{marker} {record.source_key}")

    alive_at: dict[str, int] = {}

    def count_records(stage: str) -> None:
        # Only this sync's records: other tests' records may still live in this process.
        gc.collect()
        alive_at[stage] = sum(1 for thing in gc.get_objects()
                              if isinstance(thing, CardholderRecord) and thing.source_key.startswith(marker))

    result = _sync(db, vault, exported(), on_stage=count_records)

    assert result.created == 750
    assert alive_at["applying"] == 0
    with db.read() as session:
        assert session.execute(select(func.count()).where(Cardholder.personal_encrypted.is_not(None))).scalar_one() \
            == 750


def test_sealed_columns_and_planned_writes_must_pair_up_one_to_one():
    """A guard for an invariant the planner keeps: a missing or a spare sealed record refuses the run
    instead of writing one child's encrypted identity into another child's row."""
    from adapter.sync import _next_sealed, _SealedOutOfStep

    assert _next_sealed(iter([("token", "index", True)])) == ("token", "index", True)
    with pytest.raises(_SealedOutOfStep, match="more writes"):
        _next_sealed(iter([]))


def test_the_summary_says_how_long_each_stage_took(db, vault):
    """Where a slow night's time went: the stages in the order run, their times adding up to the run's. A run
    that writes ends with its commit."""
    records = household_records(30)
    entered: list[str] = []
    first = _sync(db, vault, records, on_stage=entered.append)
    dry = _sync(db, vault, records[:-1] + household_records(1, start=900), dry_run=True)
    refused = _sync(db, vault, [])  # an empty export: refused once it is read
    assert entered == ["reading", "planning", "applying", "granting", "committing"]
    for result, stages in ((first, ["starting", "reading", "planning", "applying", "granting", "committing"]),
                           (dry, ["starting", "reading", "planning", "applying", "granting"]),
                           (refused, ["starting", "reading", "planning"])):
        assert [name for name, _seconds in result.stage_seconds] == stages
        assert all(seconds >= 0 for _name, seconds in result.stage_seconds)
        # Together they are the run's own duration.
        assert sum(seconds for _name, seconds in result.stage_seconds) == pytest.approx(result.duration_seconds)
        said = ", ".join(f"{name} {seconds:.2f}s" for name, seconds in result.stage_seconds)
        assert f"in {result.duration_seconds:.1f}s ({said}); read {result.records_read}," in result.summary()


def test_the_summary_counts_the_commit(db, vault):
    """The commit of a first load takes seconds (SQLite copies its whole write-ahead log into the database and
    syncs both to disk): the line the operator reads counts it, as the run's last stage. Made slow here."""
    slow_seconds = 0.3
    commits_at: list[float] = []

    def slow_commit(_connection) -> None:
        commits_at.append(time.perf_counter())
        time.sleep(slow_seconds)

    event.listen(db.engine, "commit", slow_commit)
    try:
        result = _sync(db, vault, household_records(5))
    finally:
        event.remove(db.engine, "commit", slow_commit)
    assert commits_at  # the listener saw the commits
    name, seconds = result.stage_seconds[-1]
    assert name == "committing"
    assert seconds >= slow_seconds
    assert sum(seconds for _name, seconds in result.stage_seconds) == pytest.approx(result.duration_seconds)
    assert f" committing {seconds:.2f}s); read " in result.summary()


def test_no_grace_deactivates_on_the_first_night_absent_and_the_pass_comes_back(db, vault):
    """sync.grace_nights: 0 is allowed; it means no night of grace, not one."""
    from adapter.settings import SyncSettings

    no_grace = SyncSettings(grace_nights=0)
    records = household_records(100)
    assert run_sync(db, vault, "gemeente", records, settings=no_grace, rules=SIMPLE_RULES,
                    today=TODAY).status == SyncStatus.SUCCEEDED
    gone = records[0]
    night = run_sync(db, vault, "gemeente", records[1:], settings=no_grace, rules=SIMPLE_RULES,
                     today=TODAY + timedelta(days=1))
    assert (night.status, night.missing, night.deactivated) == (SyncStatus.SUCCEEDED, 0, 1)
    with db.read() as session:
        card = session.execute(select(Pass).where(Pass.pass_number == gone.pass_number)).scalar_one()
        assert card.status == PassState.INACTIVE
        assert session.get(Cardholder, card.cardholder_id).status == HolderStatus.INACTIVE
    back = run_sync(db, vault, "gemeente", records, settings=no_grace, rules=SIMPLE_RULES,
                    today=TODAY + timedelta(days=2))
    assert back.status == SyncStatus.SUCCEEDED
    with db.read() as session:
        card = session.execute(select(Pass).where(Pass.pass_number == gone.pass_number)).scalar_one()
        assert (card.status, card.missing_since) == (PassState.ACTIVE, None)
        assert session.get(Cardholder, card.cardholder_id).status == HolderStatus.ACTIVE
