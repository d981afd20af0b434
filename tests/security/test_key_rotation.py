"""Key rotation: every row readable under the new key alone, and a crashed rotation finishes on rerun."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet, InvalidToken
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from adapter import audit, key_rotation
from adapter.cli import cli
from adapter.crypto import ENCRYPTION_KEYS_ENV, Vault
from adapter.db import Database
from adapter.models import Cardholder, Household
from adapter.personal import PersonalFields, open_sealed, seal
from tests.conftest import TEST_BLIND_INDEX_KEY, production_config
from tests.factories import child_with_budget
from tests.security.people import add_cardholders, person, personal_fields

KEY_1, KEY_2 = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def _vault(*keys: str) -> Vault:
    return Vault(list(keys), TEST_BLIND_INDEX_KEY)


def _decrypted(db: Database, vault: Vault) -> list[PersonalFields]:
    with db.read() as session:
        tokens = session.execute(select(Cardholder.personal_encrypted).order_by(Cardholder.id)).scalars().all()
        return [open_sealed(vault, token) for token in tokens]


class Crash(Exception):
    pass


def test_rotate_then_remove_the_old_key(db):
    ids = add_cardholders(db, _vault(KEY_1), 23)
    expected = [personal_fields(person(index)) for index in range(len(ids))]

    report = key_rotation.rotate(db, _vault(KEY_2, KEY_1), actor="operator:test", batch_size=5)
    assert report.rows_rewritten == 23 and report.tables[0].batches == 5

    with pytest.raises(InvalidToken):
        _decrypted(db, _vault(KEY_1))  # the old key alone no longer reads anything
    assert _decrypted(db, _vault(KEY_2)) == expected
    assert [status.rows_under_old_keys for status in key_rotation.check(db, _vault(KEY_2))] == [0]
    with db.read() as session:
        entry = session.execute(select(audit.AuditEntry)).scalars().one()
    assert (entry.action, entry.actor, json.loads(entry.details_json)["rows_rewritten"]) == \
        ("keys.rotated", "operator:test", 23)


def test_a_crashed_rotation_finishes_when_run_again(db):
    add_cardholders(db, _vault(KEY_1), 30)
    rotating = _vault(KEY_2, KEY_1)

    def crash_after_three_batches(progress: key_rotation.TableProgress) -> None:
        if progress.batches == 3:
            raise Crash

    with pytest.raises(Crash):
        key_rotation.rotate(db, rotating, actor="operator:test", batch_size=4, on_batch=crash_after_three_batches)
    assert [status.rows_under_old_keys for status in key_rotation.check(db, rotating)] == [30 - 12]

    rerun = key_rotation.rotate(db, rotating, actor="operator:test", batch_size=4)
    assert rerun.rows_examined == 30 and rerun.rows_rewritten == 18  # finished batches are skipped
    assert _decrypted(db, _vault(KEY_2)) == [personal_fields(person(index)) for index in range(30)]


def test_cli_rotate_and_check(tmp_path, database_url, monkeypatch):
    db = Database(database_url)
    add_cardholders(db, _vault(KEY_1), 7)
    config = production_config(tmp_path, database_url)
    runner = CliRunner()
    monkeypatch.setenv(ENCRYPTION_KEYS_ENV, f"{KEY_2},{KEY_1}")

    before = runner.invoke(cli, ["--config", str(config), "keys", "check"])
    assert before.exit_code == 1 and "cardholders: 7 of 7 row(s) under an old key" in before.output
    rotated = runner.invoke(cli, ["--config", str(config), "keys", "rotate", "--batch-size", "3"])
    assert rotated.exit_code == 0, rotated.output
    assert "cardholders: 6 row(s) examined, 6 rewritten" in rotated.stderr  # progress, batch by batch
    assert "rotated: 7 of 7 row(s) rewritten" in rotated.stdout

    rotated_check = runner.invoke(cli, ["--config", str(config), "keys", "check"])
    assert rotated_check.exit_code == 0
    assert "every row is under the first key in ADAPTER_ENCRYPTION_KEYS: the 1 after it may be removed" \
        in rotated_check.output
    monkeypatch.setenv(ENCRYPTION_KEYS_ENV, KEY_2)
    after = runner.invoke(cli, ["--config", str(config), "keys", "check"])
    assert after.exit_code == 0 and "every row is under the one key in ADAPTER_ENCRYPTION_KEYS" in after.output
    db.dispose()


def test_keys_check_after_a_new_key_was_put_last_says_to_keep_the_first(tmp_path, database_url, monkeypatch):
    # The new key added after the old one: nothing is under an old key, so check passes; it must not invite
    # removing "the old key" by that name, which is the one every row needs.
    db = Database(database_url)
    add_cardholders(db, _vault(KEY_1), 3)
    config = production_config(tmp_path, database_url)
    monkeypatch.setenv(ENCRYPTION_KEYS_ENV, f"{KEY_1},{KEY_2}")
    checked = CliRunner().invoke(cli, ["--config", str(config), "keys", "check"])
    assert checked.exit_code == 0
    assert "older keys may be removed" not in checked.output
    assert "Keep the first, which reads every row" in checked.output and "put the new key first" in checked.output
    db.dispose()


def test_rows_under_a_lost_key_are_named_as_such_not_as_rotatable(tmp_path, database_url, monkeypatch):
    # The key the rows were written with is gone (a new pair from `keys generate`, or a lost dev-keys.json):
    # `keys check` must not send the operator to `keys rotate`, which cannot read them, and that must say why.
    db = Database(database_url)
    add_cardholders(db, _vault(KEY_1), 3)
    assert [(status.rows_under_old_keys, status.rows_unreadable)
            for status in key_rotation.check(db, _vault(KEY_2))] == [(0, 3)]
    config = production_config(tmp_path, database_url)
    monkeypatch.setenv(ENCRYPTION_KEYS_ENV, KEY_2)
    runner = CliRunner()

    checked = runner.invoke(cli, ["--config", str(config), "keys", "check"])
    assert checked.exit_code == 1
    assert "3 row(s) cannot be read with any key in ADAPTER_ENCRYPTION_KEYS" in checked.output
    assert "run `stadspas-adapter keys rotate`" not in checked.output
    assert "restored from a backup made before a key rotation" in checked.output  # the other way to get here
    rotated = runner.invoke(cli, ["--config", str(config), "keys", "rotate"])
    assert rotated.exit_code == 1 and rotated.exception.__class__ is SystemExit  # an answer, not a traceback
    assert "cannot be read with any key in ADAPTER_ENCRYPTION_KEYS" in rotated.output
    assert _decrypted(db, _vault(KEY_1)) == [personal_fields(person(index)) for index in range(3)]
    db.dispose()


def test_keys_generate_says_a_rotation_keeps_the_blind_index_key():
    # `keys generate` prints both keys; an operator rotating the encryption key must not paste the new
    # blind-index key too: every stored BSN index and request fingerprint is keyed with the old one.
    result = CliRunner().invoke(cli, ["keys", "generate"])
    assert result.exit_code == 0
    assert "keep ADAPTER_BLIND_INDEX_KEY as it is" in result.stderr


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.one_of(st.none(), st.text(max_size=30)), min_size=1, max_size=14),
       old_keys=st.lists(st.integers(0, 2), min_size=1, max_size=14),
       batch_size=st.integers(1, 6), crash_after=st.one_of(st.none(), st.integers(1, 4)))
def test_rotation_of_any_values_under_any_old_keys(sqlite_template, values, old_keys, batch_size, crash_after):
    pool = [Fernet.generate_key().decode() for _ in range(3)]
    newest = Fernet.generate_key().decode()
    directory = Path(tempfile.mkdtemp())
    try:
        shutil.copyfile(sqlite_template, directory / "adapter.db")
        db = Database(f"sqlite:///{directory / 'adapter.db'}")
        with db.write() as session:
            household = Household(source="fuzz", source_key="H")
            session.add(household)
            session.flush()
            for index, value in enumerate(values):
                writer = _vault(pool[old_keys[index % len(old_keys)]])
                session.add(Cardholder(household_id=household.id, source="fuzz", source_key=str(index),
                                       personal_encrypted=seal(writer, PersonalFields(bsn="1", surname=value))))
        rotating = _vault(newest, *pool)

        def crash(progress: key_rotation.TableProgress) -> None:
            if crash_after is not None and progress.batches == crash_after:
                raise Crash

        try:
            key_rotation.rotate(db, rotating, actor="fuzz", batch_size=batch_size, on_batch=crash)
        except Crash:
            key_rotation.rotate(db, rotating, actor="fuzz", batch_size=batch_size)
        only_newest = _vault(newest)
        with db.read() as session:
            stored = session.execute(select(Cardholder.personal_encrypted).order_by(Cardholder.id)).scalars().all()
        assert [open_sealed(only_newest, token).surname for token in stored] == values
        db.dispose()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_no_token_under_the_retired_key_is_left_on_disk_after_a_rotation(sqlite_url, tmp_path):
    """SQLite: the database file and its write-ahead log, read as bytes, after the rewrite: the old key is
    retired next, perhaps because it leaked, and nothing it opens may remain."""
    db = Database(sqlite_url)
    add_cardholders(db, _vault(KEY_1), 12)
    with db.read() as session:
        old_tokens = session.execute(select(Cardholder.personal_encrypted)).scalars().all()
    files = [path for path in tmp_path.iterdir() if ".db" in path.name]
    assert all(token[:60].encode() in b"".join(path.read_bytes() for path in files) for token in old_tokens)
    report = key_rotation.rotate(db, _vault(KEY_2, KEY_1), actor="operator:test")
    assert report.rows_rewritten == 12 and report.scrubbed
    on_disk = b"".join(path.read_bytes() for path in files if path.exists())
    assert not [token for token in old_tokens if token[:60].encode() in on_disk]
    db.dispose()


def test_a_rerun_after_a_rotation_stopped_in_its_scrub_still_scrubs(sqlite_url, tmp_path, monkeypatch):
    """The rewrite committed, then the rotation stopped while making the old tokens unreadable (Ctrl-C in a long
    VACUUM): the rerun has nothing left to rewrite, and must still leave no token under the retired key on disk."""
    db = Database(sqlite_url)
    add_cardholders(db, _vault(KEY_1), 12)
    with db.read() as session:
        old_tokens = session.execute(select(Cardholder.personal_encrypted)).scalars().all()
    rotating = _vault(KEY_2, KEY_1)
    with monkeypatch.context() as patched:
        def stopped(_tables):  # type: ignore[no-untyped-def]
            raise KeyboardInterrupt

        patched.setattr(db, "scrub_removed", stopped)
        with pytest.raises(KeyboardInterrupt):
            key_rotation.rotate(db, rotating, actor="operator:test")
    files = [path for path in tmp_path.iterdir() if ".db" in path.name]
    on_disk = b"".join(path.read_bytes() for path in files if path.exists())
    assert [token for token in old_tokens if token[:60].encode() in on_disk]  # the check can fail

    rerun = key_rotation.rotate(db, rotating, actor="operator:test")
    assert rerun.rows_rewritten == 0 and rerun.scrubbed
    on_disk = b"".join(path.read_bytes() for path in files if path.exists())
    assert not [token for token in old_tokens if token[:60].encode() in on_disk]
    db.dispose()


def test_keys_check_names_a_blind_index_key_the_rows_were_not_indexed_with(tmp_path, database_url, monkeypatch):
    # The encryption key rotated by pasting both lines of `keys generate`: the rows read fine, but their BSN
    # indexes are under the old blind-index key, and the next sync would take every cardholder for a changed one.
    from adapter.crypto import BLIND_INDEX_KEY_ENV, generate_blind_index_key

    db = Database(database_url)
    add_cardholders(db, _vault(KEY_1), 4)
    config = production_config(tmp_path, database_url)
    monkeypatch.setenv(ENCRYPTION_KEYS_ENV, KEY_1)
    monkeypatch.setenv(BLIND_INDEX_KEY_ENV, generate_blind_index_key())
    runner = CliRunner()

    changed = runner.invoke(cli, ["--config", str(config), "keys", "check"])
    assert changed.exit_code == 1 and changed.exception.__class__ is SystemExit
    assert "ADAPTER_BLIND_INDEX_KEY is not the key the stored cardholders were indexed with" in changed.output
    assert "Put the original key back" in changed.output
    monkeypatch.setenv(BLIND_INDEX_KEY_ENV, TEST_BLIND_INDEX_KEY)
    same = runner.invoke(cli, ["--config", str(config), "keys", "check"])
    assert same.exit_code == 0, same.output
    db.dispose()


def test_a_report_over_rows_no_configured_key_opens_says_what_to_do_not_a_traceback(tmp_path, database_url,
                                                                                   monkeypatch):
    # A database restored from a backup made before a rotation, once the old key was removed: every command
    # that reads personal data (here the uptake report, which reads birth dates) meets tokens it cannot open.
    db = Database(database_url)
    child_with_budget(db, _vault(KEY_1))
    config = production_config(tmp_path, database_url)
    monkeypatch.setenv(ENCRYPTION_KEYS_ENV, KEY_2)

    reported = CliRunner().invoke(cli, ["--config", str(config), "report", "uptake", "--period", "2026"])
    assert reported.exit_code == 1 and reported.exception.__class__ is SystemExit, reported.output
    assert "cannot be read with any key in ADAPTER_ENCRYPTION_KEYS" in reported.output
    assert "backup made before a key rotation" in reported.output and "keys check" in reported.output
    db.dispose()
