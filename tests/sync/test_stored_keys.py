"""A sync under other keys than the stored cardholders were written with is stopped before it reads, saying to put
the key back: a blind-index key that did not index them, or an encryption key that did not seal them. A blind-index
key changed on purpose is taken by a forced run, which indexes everyone again under it."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from adapter.audit import AuditEntry
from adapter.crypto import Vault, generate_blind_index_key
from adapter.key_match import KEY_CHANGED, KeysMismatch, stored_keys_problem
from adapter.models import Cardholder, SyncRun, SyncStatus
from adapter.sync import run_sync
from tests.conftest import TEST_ENCRYPTION_KEY
from tests.sync.records import SIMPLE_RULES, SYNC_SETTINGS, TODAY, household_records

SOURCE = "gemeente"


def _sync(db, vault, records, **options):  # type: ignore[no-untyped-def]
    return run_sync(db, vault, SOURCE, records, settings=SYNC_SETTINGS, rules=SIMPLE_RULES, today=TODAY, **options)


def _stored(db):  # type: ignore[no-untyped-def]
    with db.read() as session:
        return session.execute(select(Cardholder.source_key, Cardholder.bsn_index, Cardholder.content_hash)
                               .order_by(Cardholder.source_key)).all()


def test_a_changed_blind_index_key_stops_the_sync_with_what_to_do(db, vault):
    records = household_records(20)
    assert _sync(db, vault, records).status == SyncStatus.SUCCEEDED
    before = _stored(db)
    with db.read() as session:
        assert stored_keys_problem(session, vault) is None
    other_key = Vault([TEST_ENCRYPTION_KEY], generate_blind_index_key())

    for dry_run in (False, True):
        with pytest.raises(KeysMismatch, match="Put the original key back"):
            _sync(db, other_key, records, dry_run=dry_run)
    assert _stored(db) == before
    with db.read() as session:
        runs = session.execute(select(SyncRun.status, SyncRun.reason).order_by(SyncRun.id)).all()
    assert [status for status, _ in runs] == [SyncStatus.SUCCEEDED, SyncStatus.FAILED, SyncStatus.FAILED]
    assert all("ADAPTER_BLIND_INDEX_KEY is not the key" in reason for _, reason in runs[1:])

    # The original key back: the night runs as any other, nothing changed.
    again = _sync(db, vault, records)
    assert again.status == SyncStatus.SUCCEEDED and again.updated == 0


def test_forced_on_purpose_it_indexes_everyone_under_the_new_key(db, vault):
    records = household_records(20)
    assert _sync(db, vault, records).status == SyncStatus.SUCCEEDED
    new_key = Vault([TEST_ENCRYPTION_KEY], generate_blind_index_key())

    forced = _sync(db, new_key, records, force=True, actor="operator:test")
    assert forced.status == SyncStatus.SUCCEEDED and forced.forced
    with db.read() as session:
        assert stored_keys_problem(session, new_key) is None
        assert stored_keys_problem(session, vault) == KEY_CHANGED
        refusals = session.execute(select(AuditEntry.details_json).where(AuditEntry.action == "sync.forced")).scalars().all()
    assert len(refusals) == 1 and "ADAPTER_BLIND_INDEX_KEY" in str(refusals[0])
    after = _sync(db, new_key, records)
    assert after.status == SyncStatus.SUCCEEDED and after.updated == 0


def test_an_encryption_key_gone_missing_stops_the_sync_before_it_seals_anyone_anew(db, vault):
    """A new pair of keys instead of the stored ones (or a lost var/dev-keys.json): the sync would seal every
    cardholder it rewrites under the new key and leave the others unreadable for good."""
    from cryptography.fernet import Fernet

    from adapter.key_match import ENCRYPTION_KEY_MISSING

    records = household_records(20)
    assert _sync(db, vault, records).status == SyncStatus.SUCCEEDED
    before = _stored(db)
    new_pair = Vault([Fernet.generate_key().decode()], generate_blind_index_key())
    with pytest.raises(KeysMismatch, match="Put that key back"):
        _sync(db, new_pair, records)
    assert _stored(db) == before
    with db.read() as session:
        assert stored_keys_problem(session, new_pair) == ENCRYPTION_KEY_MISSING
        assert stored_keys_problem(session, vault) is None


def test_after_a_forced_key_change_cardholders_gone_from_the_export_do_not_refuse_the_next_nights(db, vault):
    """A forced run indexes again only the cardholders in its export; those no longer in it (missing, then
    inactive, kept for years) keep their old index. Often the oldest rows, they must not stand for the key."""
    records = household_records(20)
    assert _sync(db, vault, records).status == SyncStatus.SUCCEEDED
    still_there = [record for record in records if record.household_id >= "H000003"]
    new_key = Vault([TEST_ENCRYPTION_KEY], generate_blind_index_key())

    forced = _sync(db, new_key, still_there, force=True, actor="operator:test")
    assert forced.status == SyncStatus.SUCCEEDED
    with db.read() as session:
        assert stored_keys_problem(session, new_key) is None
        assert stored_keys_problem(session, vault) == KEY_CHANGED
    assert _sync(db, new_key, still_there).status == SyncStatus.SUCCEEDED


def test_a_forced_dry_run_after_a_key_change_on_purpose_shows_the_night_and_writes_nothing(db, vault):
    """The advice says to force one run after changing the key on purpose: the operator may look first."""
    records = household_records(20)
    assert _sync(db, vault, records).status == SyncStatus.SUCCEEDED
    before = _stored(db)
    new_key = Vault([TEST_ENCRYPTION_KEY], generate_blind_index_key())
    looked = _sync(db, new_key, records, force=True, dry_run=True)
    assert looked.status == SyncStatus.DRY_RUN and "ADAPTER_BLIND_INDEX_KEY" in (looked.reason or "")
    assert _stored(db) == before
