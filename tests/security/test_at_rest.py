"""The database as an attacker with the files sees it: no BSN, surname or birth date in clear text."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from adapter import migrate
from adapter.db import Database
from adapter.demo import load_demo
from adapter.runtime import Runtime
from adapter.lookup import NotABsn, find_cardholder_by_bsn
from adapter.personal import open_sealed
from tests import factories
from tests.conftest import make_settings
from tests.fixture_personal_data import TEST_BSNS, find_personal_data_at_rest
from tests.security.people import add_cardholders


def _fill(db: Database, vault, tmp_path, *, every_bsn: bool = True) -> None:  # type: ignore[no-untyped-def]
    load_demo(Runtime(make_settings(tmp_path, db.url)), "http://127.0.0.1:8080", date(2026, 3, 1))
    factories.child_with_budget(db, vault, bsn=TEST_BSNS[7])
    if every_bsn:
        add_cardholders(db, vault, len(TEST_BSNS))


def test_sqlite_file_holds_no_personal_data_in_clear(tmp_path, sqlite_url, vault):
    db = Database(sqlite_url)
    _fill(db, vault, tmp_path)
    db.dispose()  # the last connection closing folds the WAL into the file
    path = make_url(sqlite_url).database
    blob = b"".join(Path(name).read_bytes() for name in (path, f"{path}-wal") if Path(name).exists())
    assert len(blob) > 50_000  # it really is the filled database
    assert b"retained-" not in blob and vault.blind_index(TEST_BSNS[0]).encode() in blob
    assert find_personal_data_at_rest(blob) == []


@pytest.mark.postgres
def test_pg_dump_holds_no_personal_data_in_clear(tmp_path, postgres_url, vault):
    db = Database(postgres_url)
    _fill(db, vault, tmp_path)
    db.dispose()
    plain_url = make_url(postgres_url).set(drivername="postgresql").render_as_string(hide_password=False)
    dump = subprocess.run(["pg_dump", f"--dbname={plain_url}"], capture_output=True, check=True, timeout=60).stdout
    assert b"COPY public.cardholders" in dump and vault.blind_index(TEST_BSNS[0]).encode() in dump
    assert find_personal_data_at_rest(dump) == []


def test_find_by_bsn_through_the_blind_index(db, vault, tmp_path):
    _fill(db, vault, tmp_path, every_bsn=False)
    with db.read() as session:
        holder = find_cardholder_by_bsn(session, vault, "999993847")
        assert holder is not None and open_sealed(vault, holder.personal_encrypted).first_names == "Yasmina"
        # A spreadsheet dropped the leading zeros: 8 digits are padded back.
        padded = find_cardholder_by_bsn(session, vault, "00009921")
        assert padded is not None and open_sealed(vault, padded.personal_encrypted).bsn == "000009921"
        assert find_cardholder_by_bsn(session, vault, "123456782") is None
        with pytest.raises(NotABsn) as refused:
            find_cardholder_by_bsn(session, vault, "Jansen 999993653")
        assert "999993653" not in str(refused.value)


def test_the_file_scan_sees_clear_text_when_there_is_some(sqlite_url):
    path = make_url(sqlite_url).database
    # Plain sqlite3, not through SQLAlchemy: its statement log would (rightly) fail the session check.
    with contextlib.closing(sqlite3.connect(path)) as connection, connection:
        connection.execute("INSERT INTO households (source, source_key, created_at, updated_at) "
                           "VALUES ('careless', 'de Vries ' || '999993926', '2026-01-01', '2026-01-01')")
    blob = Path(path).read_bytes() + (Path(f"{path}-wal").read_bytes() if Path(f"{path}-wal").exists() else b"")
    assert find_personal_data_at_rest(blob) == ["BSN 999993926", "surname 'de Vries'", "surname 'Vries'"]


def test_a_new_sqlite_database_and_its_log_are_readable_by_their_owner_alone(tmp_path, vault):
    """They hold full pass numbers and the sealed personal data; the umask would let every account read them."""
    made = tmp_path / "var" / "adapter.db"
    db = Database(f"sqlite:///{made}")
    try:
        migrate.upgrade(db)
        add_cardholders(db, vault, 2)
        with db.engine.connect() as connection:  # the log holds what was written until a check-point
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
            files = [made, made.with_name("adapter.db-wal"), made.with_name("adapter.db-shm")]
            assert [(path.name, path.stat().st_mode & 0o077) for path in files] == \
                [(path.name, 0) for path in files]
    finally:
        db.dispose()

    existing = tmp_path / "existing.db"  # one made before, or by the operator: its mode is theirs
    existing.touch(mode=0o640)
    existing.chmod(0o640)
    Database(f"sqlite:///{existing}").dispose()
    assert existing.stat().st_mode & 0o777 == 0o640
