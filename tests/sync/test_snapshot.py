"""The snapshot a sync compares against: this source's rows, the other sources' pass numbers."""

from __future__ import annotations

import dataclasses

from sqlalchemy import select, update

from adapter.models import Cardholder
from adapter.sync import run_sync
from adapter.sync_snapshot import load_snapshot
from tests.sync.records import SIMPLE_RULES, SYNC_SETTINGS, TODAY, household_records


def _sync(db, vault, source, records):  # type: ignore[no-untyped-def]
    result = run_sync(db, vault, source, records, settings=SYNC_SETTINGS, rules=SIMPLE_RULES, today=TODAY)
    assert result.ok, result.reason
    return result


def test_a_pass_number_of_another_source_is_refused_and_stays_with_that_source(db, vault):
    ours, theirs = household_records(3), household_records(2, start=50)
    _sync(db, vault, "noord", ours)
    _sync(db, vault, "zuid", theirs)
    with db.read() as session:
        snapshot = load_snapshot(session, "noord")
    assert sorted(snapshot.passes) == sorted(record.pass_number for record in ours)
    assert snapshot.foreign_pass_numbers == {record.pass_number for record in theirs}
    assert {known.cardholder_id for known in snapshot.passes.values()} == {
        known.id for known in snapshot.holders.values()}

    claimed = dataclasses.replace(ours[0], pass_number=theirs[0].pass_number)
    result = run_sync(db, vault, "noord", [claimed, *ours[1:]], settings=SYNC_SETTINGS.model_copy(
        update={"max_change_share": 1.0}), rules=SIMPLE_RULES, today=TODAY)
    assert result.rejected_sample == [
        (claimed.source_key, "pass_number: already belongs to a cardholder of another source")]


def test_of_two_stored_cardholders_with_one_bsn_the_snapshot_names_the_oldest(db, vault):
    # Stored before duplicates were refused, say: both rows carry the BSN. The older row (lower id) is the child
    # the budgets were granted to first, whatever order the database hands the rows over in (SQLite: by key).
    older, younger = household_records(2)[:2]
    older = dataclasses.replace(older, cardholder_id="Z-older")
    younger = dataclasses.replace(younger, cardholder_id="A-younger")
    _sync(db, vault, "gemeente", [older, younger])
    with db.write() as session:
        bsn_index = session.execute(select(Cardholder.bsn_index)
                                    .where(Cardholder.source_key == "Z-older")).scalar_one()
        session.execute(update(Cardholder).where(Cardholder.source_key == "A-younger").values(bsn_index=bsn_index))
    with db.read() as session:
        snapshot = load_snapshot(session, "gemeente")
    assert snapshot.holders["Z-older"].id < snapshot.holders["A-younger"].id
    assert snapshot.holder_by_bsn[bytes.fromhex(bsn_index)] == "Z-older"


def test_the_snapshot_holds_hashes_as_bytes_and_each_pass_shares_its_cardholders_id(db, vault):
    """A nightly sync holds the snapshot of every cardholder of the city: the content hash and BSN index as
    the bytes their hex digits spell (half the text), and a pass's cardholder id as its cardholder's own
    int object, not one more."""
    records = household_records(3)
    _sync(db, vault, "gemeente", records)
    with db.read() as session:
        stored = dict(session.execute(select(Cardholder.source_key, Cardholder.content_hash)).all())
        snapshot = load_snapshot(session, "gemeente")
    for key, content_hash in stored.items():
        assert snapshot.holders[key].content_hash == bytes.fromhex(content_hash)
    assert all(isinstance(known.bsn_index, bytes) for known in snapshot.holders.values()
               if known.bsn_index is not None)
    ids = {known.id: known.id for known in snapshot.holders.values()}
    assert all(known.cardholder_id is ids[known.cardholder_id] for known in snapshot.passes.values())


def test_a_stored_hash_that_is_not_hex_counts_as_changed_and_is_written_again(db, vault):
    records = household_records(2)
    _sync(db, vault, "gemeente", records)
    with db.write() as session:
        session.execute(update(Cardholder).where(Cardholder.source_key == records[0].cardholder_id)
                        .values(content_hash="not hex at all"))
    result = _sync(db, vault, "gemeente", records)
    assert (result.updated, result.unchanged) == (1, len(records) - 1)
    with db.read() as session:
        rewritten = session.execute(select(Cardholder.content_hash)
                                    .where(Cardholder.source_key == records[0].cardholder_id)).scalar_one()
    assert bytes.fromhex(rewritten)


def test_an_unchanged_night_takes_no_blind_index_and_seals_nothing(db, vault, monkeypatch):
    """The nightly fast path: a cardholder whose stored content hash equals the record's is settled with that
    one keyed hash. Comparing the snapshot's bytes with the record's hex text would still count it unchanged,
    but only after a blind index and a table entry for every cardholder of the city."""
    from adapter.sealing import Sealer

    records = household_records(30)
    _sync(db, vault, "gemeente", records)
    calls = {"blind_index": 0, "sealed": 0}
    blind_index, add = type(vault).blind_index, Sealer.add

    def counting_blind_index(self, bsn):  # type: ignore[no-untyped-def]
        calls["blind_index"] += 1
        return blind_index(self, bsn)

    def counting_add(self, record, bsn_index):  # type: ignore[no-untyped-def]
        calls["sealed"] += 1
        return add(self, record, bsn_index)

    monkeypatch.setattr(type(vault), "blind_index", counting_blind_index)
    monkeypatch.setattr(Sealer, "add", counting_add)
    result = _sync(db, vault, "gemeente", records)
    assert result.unchanged == len(records)
    # One: the run's check of the blind-index key on a stored BSN (adapter.key_match); none per cardholder.
    assert calls == {"blind_index": 1, "sealed": 0}
