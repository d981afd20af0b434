"""A first load into empty tables has its foreign keys checked once at the end (PostgreSQL), or at the commit
(SQLite), and never skipped."""

from __future__ import annotations

import contextlib
import shutil
import threading
import uuid
from datetime import datetime, timezone

import psycopg
import pytest
from sqlalchemy import UniqueConstraint, create_engine, func, select, text
from sqlalchemy.exc import IntegrityError

from adapter import first_load, grants, sealing, sync_lock
from adapter.bulk import insert_rows
from adapter.db import Database
from adapter.first_load import keys_checked_at_end
from adapter.models import Budget, Cardholder, EntryKind, Household, LedgerEntry, Pass, Reversal, SyncRun, SyncStatus
from adapter.personal import open_sealed
from adapter.settings import SyncSettings
from adapter.sync import _INDEXES_BUILT_AFTER, _LOADED_TABLES, _UNIQUE_BUILT_AFTER, run_sync
from tests.sync.records import SIMPLE_RULES, TODAY, household_records

STAMP = datetime(2026, 11, 30, 2, 0, tzinfo=timezone.utc)
ROWS = 1_000_000  # more than CHECK_AT_END_FROM: a first load's size
# Every key between two tables a sync loads, as the migrations name them.
LOADED_KEYS = {"cardholders_household_id_fkey", "passes_cardholder_id_fkey", "passes_replaced_by_id_fkey",
               "budgets_cardholder_id_fkey", "ledger_entries_budget_id_fkey",
               # the counter's, which every ledger entry names (as NULL) and a first load leaves empty
               "ledger_entries_redemption_id_fkey", "ledger_entries_reversal_id_fkey", "redemptions_budget_id_fkey",
               "redemptions_pass_id_fkey", "reversals_redemption_id_fkey"}


def _constraints(session, kind: str) -> set[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    """(table, name, definition) of every constraint of ``kind`` (PostgreSQL's contype: "f", "u")."""
    return {tuple(row) for row in session.execute(text(
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE contype = :kind"
    ), {"kind": kind}).all()}


def _foreign_keys(session) -> set[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    return _constraints(session, "f")


def _loaded_keys(keys: set[tuple[str, str, str]]) -> set[tuple[str, str, str]]:
    """The keys among the tables a sync loads: the ones a first load checks at the end."""
    loaded = {table.name for table in _LOADED_TABLES}
    return {key for key in keys if key[0] in loaded and key[2].split("REFERENCES ")[1].split("(")[0] in loaded}


def _household(session) -> None:  # type: ignore[no-untyped-def]
    insert_rows(session, Household.__table__, [{"id": 1, "source_key": "H1"}],
                {"source": "load", "created_at": STAMP, "updated_at": STAMP})


def _orphan_pass(session) -> None:  # type: ignore[no-untyped-def]
    insert_rows(session, Pass.__table__, [{"cardholder_id": 999, "pass_number": "6400000000001", "status": "active"}],
                {"created_at": STAMP, "updated_at": STAMP})


@pytest.fixture
def postgres_db(postgres_url):  # type: ignore[no-untyped-def]
    """A fresh, migrated PostgreSQL database: where a first load does something (SQLite changes nothing)."""
    database = Database(postgres_url)
    yield database
    database.dispose()


@pytest.mark.postgres
def test_into_empty_tables_the_keys_are_dropped_for_the_load_and_the_same_keys_are_back_after(postgres_db):
    with postgres_db.read() as session:
        before = _foreign_keys(session)
    assert {name for _, name, _ in _loaded_keys(before)} == LOADED_KEYS
    with postgres_db.write() as session:
        with keys_checked_at_end(session, _LOADED_TABLES, rows_coming=ROWS) as checked_at_end:
            assert checked_at_end
            during = _foreign_keys(session)
            _household(session)
    assert during == before - _loaded_keys(before)  # keys to other tables (a redemption's merchant) stay
    with postgres_db.read() as session:
        assert _foreign_keys(session) == before


@contextlib.contextmanager
def _first_load(database: Database, refused_by: str | None, **built_after):  # type: ignore[no-untyped-def]
    """A first load's write transaction, its keys checked at the end (``built_after``: keys_checked_at_end's
    indexes and unique keys to build then); ``refused_by``: the constraint expected to fail it there."""
    with contextlib.ExitStack() as failing:
        if refused_by is not None:
            failing.enter_context(pytest.raises(IntegrityError, match=refused_by))
        with database.write() as session:
            with keys_checked_at_end(session, _LOADED_TABLES, rows_coming=ROWS, **built_after) as checked_at_end:
                assert checked_at_end
                yield session


def _indexes(session) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return dict(session.execute(text("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'")).all())


@pytest.mark.postgres
@pytest.mark.parametrize("load_fails", [False, True], ids=["load", "failed load"])
def test_the_indexes_named_are_built_after_the_load_exactly_as_they_were(postgres_db, load_fails):
    named = [index.name for index in _INDEXES_BUILT_AFTER]
    with postgres_db.read() as session:
        before = _indexes(session)
    assert set(named) <= set(before) and len(named) == 4
    with _first_load(postgres_db, "passes_cardholder_id_fkey" if load_fails else None,
                     indexes_built_after=_INDEXES_BUILT_AFTER) as session:
        during = _indexes(session)
        _household(session)
        if load_fails:
            _orphan_pass(session)
    assert during == {name: definition for name, definition in before.items() if name not in named}
    with postgres_db.read() as session:
        assert _indexes(session) == before


def _unique_keys(session) -> set[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    return _constraints(session, "u")


def _budget(session, budget_id: int) -> None:  # type: ignore[no-untyped-def]
    insert_rows(session, Budget.__table__, [{"id": budget_id, "cardholder_id": 1}],
                {"rule_code": "R", "rule_name": "R", "rule_version": 1, "period_key": "2026",
                 "period_start": STAMP.date(), "period_end": STAMP.date(), "granted_cents": 100, "balance_cents": 100,
                 "status": "open", "created_at": STAMP})


def _cardholder(session) -> None:  # type: ignore[no-untyped-def]
    insert_rows(session, Cardholder.__table__, [{"id": 1, "household_id": 1, "source_key": "C1"}],
                {"source": "load", "status": "active", "created_at": STAMP, "updated_at": STAMP})


@pytest.mark.postgres
@pytest.mark.parametrize("load_fails", [False, True], ids=["load", "failed load"])
def test_the_budgets_unique_key_is_added_after_the_load_as_it_was_and_refuses_a_second_budget_then(
        postgres_db, load_fails):
    assert [constraint.name for constraint in _UNIQUE_BUILT_AFTER] == ["uq_budgets_child_rule_period"]
    with postgres_db.read() as session:
        uniques, indexes = _unique_keys(session), _indexes(session)
    assert ("budgets", "uq_budgets_child_rule_period", "UNIQUE (cardholder_id, rule_code, period_key)") in uniques
    with _first_load(postgres_db, "uq_budgets_child_rule_period" if load_fails else None,
                     unique_built_after=_UNIQUE_BUILT_AFTER) as session:
        during = _unique_keys(session)
        _household(session)
        _cardholder(session)
        _budget(session, 1)
        if load_fails:
            _budget(session, 2)  # the same child, rule and period: goes in, nothing checks it now
            assert session.scalar(select(func.count()).select_from(Budget)) == 2
    assert during == {key for key in uniques if key[1] != "uq_budgets_child_rule_period"}
    with postgres_db.read() as session:
        assert _unique_keys(session) == uniques
        assert _indexes(session) == indexes
        assert session.scalar(select(func.count()).select_from(Budget)) == (0 if load_fails else 1)


def _passes_unique_number() -> UniqueConstraint:
    return next(constraint for constraint in Pass.__table__.constraints if isinstance(constraint, UniqueConstraint)
                and [column.name for column in constraint.columns] == ["pass_number"])


@pytest.mark.postgres
def test_a_key_among_the_loaded_tables_that_names_a_unique_key_built_after_is_added_after_that_key(postgres_db):
    """Dropped with the keys, it is added again only once the unique key it needs is back."""
    with postgres_db.write() as session:  # a loaded table's key onto the passes' unique number
        session.execute(text("ALTER TABLE reversals ADD COLUMN pass_number varchar(32) "
                             "CONSTRAINT reversals_pass_number_fkey REFERENCES passes (pass_number)"))
    with postgres_db.read() as session:
        keys, uniques = _foreign_keys(session), _unique_keys(session)
    with _first_load(postgres_db, None, unique_built_after=[_passes_unique_number()]) as session:
        during = {name for _table, name, _definition in _foreign_keys(session) | _unique_keys(session)}
        assert "reversals_pass_number_fkey" not in during and "passes_pass_number_key" not in during
        _household(session)
    with postgres_db.read() as session:
        assert _foreign_keys(session) == keys and _unique_keys(session) == uniques


def test_a_unique_key_of_a_table_outside_the_load_is_refused_before_anything_is_dropped(db):
    with pytest.raises(ValueError, match="uq_budgets_child_rule_period"), db.write() as session:
        with keys_checked_at_end(session, [Household.__table__, Reversal.__table__], rows_coming=ROWS,
                                 unique_built_after=_UNIQUE_BUILT_AFTER):
            pass


@pytest.mark.postgres
def test_a_unique_key_another_tables_foreign_key_relies_on_stays_and_checks_each_row(postgres_db):
    """Its drop would be refused (the key needs its index): it is left in place instead of failing the load."""
    with postgres_db.write() as session:  # (each test has a database of its own: nothing to drop afterwards)
        session.execute(text("CREATE TABLE pass_notes (pass_number varchar(32) REFERENCES passes (pass_number))"))
    with _first_load(postgres_db, None, unique_built_after=[_passes_unique_number(), *_UNIQUE_BUILT_AFTER]) as session:
        names = {name for _table, name, _definition in _unique_keys(session)}
        assert "passes_pass_number_key" in names and "uq_budgets_child_rule_period" not in names
        _household(session)
        _cardholder(session)
        a_pass = {"cardholder_id": 1, "pass_number": "6400000000001", "status": "active"}
        insert_rows(session, Pass.__table__, [a_pass], {"created_at": STAMP, "updated_at": STAMP})
        with pytest.raises(IntegrityError, match="passes_pass_number_key"), session.begin_nested():
            insert_rows(session, Pass.__table__, [a_pass], {"created_at": STAMP, "updated_at": STAMP})


@pytest.mark.postgres
def test_a_row_naming_nothing_fails_the_load_at_its_end_and_leaves_the_keys_and_tables_as_they_were(postgres_db):
    with postgres_db.read() as session:
        before = _foreign_keys(session)
    with pytest.raises(IntegrityError, match="passes_cardholder_id_fkey"):
        with postgres_db.write() as session:
            with keys_checked_at_end(session, _LOADED_TABLES, rows_coming=ROWS) as checked_at_end:
                assert checked_at_end
                _orphan_pass(session)  # goes in: nothing checks it row by row now
    with postgres_db.read() as session:
        assert _foreign_keys(session) == before
        assert session.scalar(select(func.count()).select_from(Pass)) == 0


@pytest.mark.postgres
@pytest.mark.parametrize("households_looked_at", ["first", "last"])
def test_with_a_row_in_a_table_the_keys_stay_and_readers_are_not_kept_waiting(postgres_db, households_looked_at):
    reader = create_engine(postgres_db.url)
    tables = _LOADED_TABLES if households_looked_at == "first" else _LOADED_TABLES[::-1]
    assert (tables[0] if households_looked_at == "first" else tables[-1]) is Household.__table__
    try:
        with postgres_db.write() as session:
            _household(session)
        with postgres_db.write() as session:
            with keys_checked_at_end(session, tables, rows_coming=ROWS) as checked_at_end:
                assert not checked_at_end
                with pytest.raises(IntegrityError):  # checked row by row, as always
                    with session.begin_nested():
                        _orphan_pass(session)
                # The lock taken to look was given back with its savepoint: another connection reads at once.
                with reader.connect() as connection:
                    connection.execute(text("SET lock_timeout = '2s'"))
                    assert connection.scalar(select(func.count()).select_from(Household)) == 1
    finally:
        reader.dispose()


@pytest.mark.postgres
def test_rows_committed_between_the_first_look_and_the_lock_are_seen_under_the_lock(postgres_db, monkeypatch):
    """Another source's first load can commit after this one found the tables empty and before it locks them."""
    looks = []
    real_look = first_load._all_empty

    def first_look_before_the_rows_arrived(connection, names):  # type: ignore[no-untyped-def]
        looks.append(names)
        return True if len(looks) == 1 else real_look(connection, names)

    monkeypatch.setattr(first_load, "_all_empty", first_look_before_the_rows_arrived)
    with postgres_db.write() as session:
        _household(session)
    with postgres_db.write() as session:
        with keys_checked_at_end(session, _LOADED_TABLES, rows_coming=ROWS) as checked_at_end:
            assert not checked_at_end
            assert _loaded_keys(_foreign_keys(session))
    assert len(looks) == 2


@pytest.mark.postgres
def test_a_table_another_transaction_holds_is_not_waited_for(postgres_db):
    other = create_engine(postgres_db.url)
    answers: list[object] = []

    def loading() -> None:
        try:
            with postgres_db.write() as session:
                with keys_checked_at_end(session, _LOADED_TABLES, rows_coming=ROWS) as checked_at_end:
                    answers.append((checked_at_end, bool(_loaded_keys(_foreign_keys(session)))))
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            answers.append(exc)

    try:
        with other.connect() as holding:
            holding.execute(select(func.count()).select_from(Budget))  # its transaction stays open: a lock held
            load = threading.Thread(target=loading)
            load.start()
            load.join(timeout=20)  # a load that waited for the lock would still be waiting here
            finished_while_held = not load.is_alive()
            holding.rollback()
            load.join()
        assert finished_while_held
        assert answers == [(False, True)]  # the usual way, keys in place
    finally:
        other.dispose()


@pytest.mark.postgres
def test_a_key_made_not_valid_is_left_in_place_and_still_checks_each_row(postgres_db):
    """Re-adding a NOT VALID key as it was would check none of the loaded rows: such a key is not dropped."""
    with postgres_db.write() as session:
        session.execute(text("ALTER TABLE passes DROP CONSTRAINT passes_cardholder_id_fkey"))
        session.execute(text("ALTER TABLE passes ADD CONSTRAINT passes_cardholder_id_fkey FOREIGN KEY "
                             "(cardholder_id) REFERENCES cardholders(id) NOT VALID"))
    with pytest.raises(IntegrityError, match="passes_cardholder_id_fkey"), postgres_db.write() as session:
        with keys_checked_at_end(session, _LOADED_TABLES, rows_coming=ROWS) as checked_at_end:
            assert checked_at_end
            assert "passes_cardholder_id_fkey" in {name for _, name, _ in _foreign_keys(session)}
            _orphan_pass(session)


@pytest.mark.postgres
def test_a_user_that_may_write_but_does_not_own_the_tables_loads_with_its_keys_in_place(postgres_db):
    role = f"spa_writer_{uuid.uuid4().hex[:8]}"
    try:
        with postgres_db.write() as session:
            session.execute(text(f"CREATE ROLE {role}"))
            session.execute(text(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}"))
            session.execute(text(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}"))
        with postgres_db.write() as session:
            session.execute(text(f"SET LOCAL ROLE {role}"))
            with keys_checked_at_end(session, _LOADED_TABLES, rows_coming=ROWS) as checked_at_end:
                assert not checked_at_end
                _household(session)
            assert session.scalar(select(func.count()).select_from(Household)) == 1
    finally:
        with postgres_db.write() as session:
            session.execute(text(f"DROP OWNED BY {role}"))
            session.execute(text(f"DROP ROLE {role}"))


@pytest.mark.postgres
def test_a_load_that_fails_puts_the_keys_back_even_for_a_caller_that_goes_on(postgres_db):
    """The drops live in a savepoint: a caller that catches the failure and commits keeps its keys."""
    with postgres_db.read() as session:
        before = _foreign_keys(session)
    with postgres_db.write() as session:
        with pytest.raises(RuntimeError):
            with keys_checked_at_end(session, _LOADED_TABLES, rows_coming=ROWS) as checked_at_end:
                assert checked_at_end
                _orphan_pass(session)
                raise RuntimeError("the load stops half-way")
        _household(session)  # and commits
    with postgres_db.read() as session:
        assert _foreign_keys(session) == before
        assert session.scalar(select(func.count()).select_from(Pass)) == 0
        assert session.scalar(select(func.count()).select_from(Household)) == 1


def test_a_small_load_keeps_its_keys_checked_row_by_row(db):
    with pytest.raises(IntegrityError), db.write() as session:
        with keys_checked_at_end(session, _LOADED_TABLES, rows_coming=10) as small:
            assert not small
            _orphan_pass(session)


def test_on_sqlite_a_first_load_has_its_keys_checked_when_it_ends_and_a_row_naming_nothing_fails_it(sqlite_url):
    db = Database(sqlite_url)
    try:
        # Refused when the load ends, before any commit (so a dry run, which never commits, is refused too).
        with pytest.raises(IntegrityError, match="rows of passes name rows that do not exist"), \
                db.write() as session:
            with keys_checked_at_end(session, _LOADED_TABLES, rows_coming=ROWS) as checked_at_end:
                assert checked_at_end
                _orphan_pass(session)  # goes in: SQLite only counts it now
                assert session.scalar(select(func.count()).select_from(Pass)) == 1
        with db.read() as session:
            assert session.scalar(select(func.count()).select_from(Pass)) == 0
        with db.write() as session:
            _household(session)
        with pytest.raises(IntegrityError), db.write() as session:  # no longer empty: checked row by row
            with keys_checked_at_end(session, _LOADED_TABLES, rows_coming=ROWS) as checked_at_end:
                assert not checked_at_end
                _orphan_pass(session)
    finally:
        db.dispose()


def test_on_sqlite_a_load_its_caller_commits_is_refused_at_the_commit_and_leaves_nothing(sqlite_url):
    """With ``will_commit`` nothing looks at the rows when the load ends: SQLite's own count of the rows naming
    nothing refuses the commit, and the database stays as it was."""
    db = Database(sqlite_url)
    try:
        with pytest.raises(IntegrityError, match="FOREIGN KEY constraint failed"), db.write() as session:
            with keys_checked_at_end(session, _LOADED_TABLES, rows_coming=ROWS, will_commit=True) as checked_at_end:
                assert checked_at_end
                _orphan_pass(session)
            # The load ended and nothing refused it yet: the rows are counted, not looked at.
            assert session.scalar(select(func.count()).select_from(Pass)) == 1
        with db.read() as session:
            assert session.scalar(select(func.count()).select_from(Pass)) == 0
        with db.write() as session:  # the connection is whole again, and its keys are checked row by row
            _household(session)
        with db.read() as session:
            assert session.scalar(select(func.count()).select_from(Household)) == 1
    finally:
        db.dispose()


@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry run"])
def test_on_sqlite_a_first_sync_with_a_row_naming_nothing_fails_and_writes_nothing(
        dry_run, sqlite_template, tmp_path, vault, monkeypatch):
    """The real run is refused by SQLite at its commit, the dry run when its load ends: neither writes a row."""
    import adapter.sync as sync

    path = tmp_path / "first.db"
    shutil.copyfile(sqlite_template, path)
    db = Database(f"sqlite:///{path}")
    write_passes = sync._write_passes

    def and_an_orphan(session, *args, **kwargs):  # type: ignore[no-untyped-def]
        _orphan_pass(session)
        return write_passes(session, *args, **kwargs)

    monkeypatch.setattr(first_load, "CHECK_AT_END_FROM", 1)
    monkeypatch.setattr(sync, "_write_passes", and_an_orphan)
    try:
        with pytest.raises(IntegrityError) as refused:
            run_sync(db, vault, "gemeente", household_records(5), settings=SyncSettings(), rules=SIMPLE_RULES,
                     today=TODAY, dry_run=dry_run)
        if dry_run:  # by the look when the load ends, which names the table
            assert refused.value.statement == "PRAGMA foreign_key_check"
            assert str(refused.value.orig).endswith("rows of passes name rows that do not exist")
        else:  # by SQLite at the commit (no statement of ours), not as the orphan went in
            assert refused.value.statement is None
            assert str(refused.value.orig) == "FOREIGN KEY constraint failed"
        assert _what_a_sync_left(db) == {"households": 0, "cardholders": 0, "passes": 0, "budgets": 0,
                                         "ledger_entries": 0, "grant_judgements": 0, "cents": None, "keys": None,
                                         "unique keys": None}
        with db.read() as session:  # the run is on record as failed, and the source is free for the next
            assert session.scalars(select(SyncRun.status)).all() == [SyncStatus.FAILED]
            assert sync_lock.current_lock(session, "gemeente") is None
    finally:
        db.dispose()


def _what_a_sync_left(db: Database) -> dict[str, object]:
    with db.read() as session:
        counts = {model.__tablename__: session.scalar(select(func.count()).select_from(model))
                  for model in (Household, Cardholder, Pass, Budget, LedgerEntry, grants.GrantJudgement)}
        return {**counts, "cents": session.scalar(select(func.sum(LedgerEntry.amount_cents))),
                "keys": _foreign_keys(session) if db.is_postgres else None,
                "unique keys": _unique_keys(session) if db.is_postgres else None}


def _fresh_url(engine: str, request, sqlite_template, tmp_path) -> str:  # type: ignore[no-untyped-def]
    """A new, migrated, empty database of ``engine``."""
    if engine == "postgres":
        return request.getfixturevalue("postgres_databases").fresh()
    path = tmp_path / f"{uuid.uuid4().hex}.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.mark.parametrize("engine", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_first_sync_loaded_with_its_keys_checked_at_the_end_leaves_what_one_checked_row_by_row_leaves(
        engine, request, sqlite_template, tmp_path, vault, monkeypatch):
    """Checked at the end, a first load also writes its cardholders after their passes (when their sealed
    columns are ready), and on PostgreSQL judges each slice of children while the server writes the last
    slice's first grants (sent ahead, ``adapter.sent_ahead``): the result is the same to the last cent and the
    last encrypted name."""
    import adapter.sync as sync

    records = household_records(40)
    left, took, order = {}, [], []
    # Slices of 7 children: some 20 of them, each judged after the one before sent its first grants ahead.
    monkeypatch.setattr(grants, "_JUDGE_SLICE", 7)
    judge_slice, grants_out = grants._judge_slice, []

    def noting_grants_out(session, *args, **kwargs):  # type: ignore[no-untyped-def]
        driver = session.connection().connection.driver_connection
        grants_out.append(engine == "postgres" and driver.pgconn.pipeline_status != psycopg.pq.PipelineStatus.OFF)
        return judge_slice(session, *args, **kwargs)

    monkeypatch.setattr(grants, "_judge_slice", noting_grants_out)

    @contextlib.contextmanager
    def noting(*args, **kwargs):  # type: ignore[no-untyped-def]
        with keys_checked_at_end(*args, **kwargs) as checked_at_end:
            took.append(checked_at_end)
            yield checked_at_end

    insert_tuples = sync.insert_tuples

    def ordered(session, table, *args, **kwargs):  # type: ignore[no-untyped-def]
        order.append(table.name)
        return insert_tuples(session, table, *args, **kwargs)

    monkeypatch.setattr(sync, "keys_checked_at_end", noting)
    monkeypatch.setattr(sync, "insert_tuples", ordered)
    # Sealed by a worker, as a large first load is, so that the cardholders wait for it.
    monkeypatch.setattr(sealing, "PARALLEL_FROM", 0)
    monkeypatch.setattr(sealing, "CHUNK", 7)
    monkeypatch.setattr(sealing.os, "cpu_count", lambda: 2)
    for check_at_end_from in (1, 10**9):
        monkeypatch.setattr(first_load, "CHECK_AT_END_FROM", check_at_end_from)
        db = Database(_fresh_url(engine, request, sqlite_template, tmp_path))
        order.clear()
        grants_out.clear()
        try:
            result = run_sync(db, vault, "gemeente", records, settings=SyncSettings(), rules=SIMPLE_RULES,
                              today=TODAY)
            assert result.ok and result.created == len(records) and result.budgets_granted > 0
            left[check_at_end_from] = _what_a_sync_left(db)
            with db.read() as session:
                left[check_at_end_from]["people"] = session.execute(
                    select(Cardholder.id, Cardholder.source_key, Cardholder.bsn_index, Cardholder.is_child,
                           Cardholder.personal_encrypted).order_by(Cardholder.id)).all()
                left[check_at_end_from]["people"] = [
                    (*row[:4], open_sealed(vault, row[4])) for row in left[check_at_end_from]["people"]]
                # Each budget with its child, rule and amount, and the amounts of its ledger entries.
                entries = session.execute(select(LedgerEntry.budget_id, LedgerEntry.kind, LedgerEntry.amount_cents)
                                          .order_by(LedgerEntry.id)).all()
                left[check_at_end_from]["budgets"] = [
                    (holder_key, code, cents, [(kind, amount) for budget, kind, amount in entries
                                               if budget == budget_id])
                    for budget_id, holder_key, code, cents in session.execute(
                        select(Budget.id, Cardholder.source_key, Budget.rule_code, Budget.granted_cents)
                        .join(Cardholder).order_by(Cardholder.source_key, Budget.rule_code)).all()]
        finally:
            db.dispose()
        passes_first = order.index("passes") < order.index("cardholders")
        assert passes_first == (check_at_end_from == 1)
        # Judged while the slice before's first grants were out: every slice after the first one that had a
        # new budget (most, with these records), and none when nothing was sent ahead.
        assert len(grants_out) > 10 and grants_out[0] is False
        if engine == "postgres" and check_at_end_from == 1:
            assert grants_out.count(True) >= len(grants_out) // 2, grants_out
        else:
            assert True not in grants_out
        budgets = left[check_at_end_from]["budgets"]
        assert budgets and all(entries == [(EntryKind.GRANT, cents)] for _key, _code, cents, entries in budgets)
    assert took == [True, False]
    assert left[1] == left[10**9]
    assert left[1]["cardholders"] == len(records)


@pytest.mark.parametrize("engine", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_the_ids_a_first_load_took_in_one_move_are_its_own_and_the_next_rows_are_numbered_after_them(
        engine, request, sqlite_template, tmp_path, vault, monkeypatch):
    """A first load holds its tables locked and takes each run of ids by moving the sequence once
    (``reserve_ids`` with ``alone``), its first grants' too. Each budget must get exactly its one entry, in
    budget order, and every row the database numbers later (the next night's, a shop's) must come after."""
    from adapter import bulk, ledger

    monkeypatch.setattr(first_load, "CHECK_AT_END_FROM", 1)
    took: list[bool] = []
    # Which tables' ids were taken in one move: asked for alone, and (PostgreSQL) found locked.
    in_one_move: set[str] = set()
    move_if_locked = bulk._move_if_locked

    def noting_move(connection, table, count):  # type: ignore[no-untyped-def]
        last = move_if_locked(connection, table, count)
        if last is not None:
            in_one_move.add(table.name)
        return last

    monkeypatch.setattr(bulk, "_move_if_locked", noting_move)

    @contextlib.contextmanager
    def noting(*args, **kwargs):  # type: ignore[no-untyped-def]
        with keys_checked_at_end(*args, **kwargs) as checked_at_end:
            took.append(checked_at_end)
            yield checked_at_end

    import adapter.sync as sync
    monkeypatch.setattr(sync, "keys_checked_at_end", noting)
    db = Database(_fresh_url(engine, request, sqlite_template, tmp_path))
    try:
        first = run_sync(db, vault, "gemeente", household_records(40), settings=SyncSettings(), rules=SIMPLE_RULES,
                         today=TODAY)
        assert first.ok and first.budgets_granted > 0 and took == [True]
        with db.read() as session:
            budgets = session.execute(select(Budget.id, Budget.granted_cents).order_by(Budget.id)).all()
            entries = session.execute(select(LedgerEntry.id, LedgerEntry.budget_id, LedgerEntry.amount_cents)
                                      .order_by(LedgerEntry.id)).all()
        assert [(budget_id, cents) for _id, budget_id, cents in entries] == [tuple(row) for row in budgets]
        assert [entry_id for entry_id, *_ in entries] == list(range(entries[0][0], entries[0][0] + len(entries)))
        assert len({entry_id - budget_id for entry_id, budget_id, _cents in entries}) == 1
        if engine == "postgres":
            assert in_one_move == {"households", "cardholders", "passes", "budgets", "ledger_entries"}
        # The next night brings new households (the tables hold rows now: ids drawn as usual)...
        later = run_sync(db, vault, "gemeente", household_records(45), settings=SyncSettings(),
                         rules=SIMPLE_RULES, today=TODAY)
        assert took == [True, False] and later.ok and later.created > 0 and later.budgets_granted > 0
        # ...and a shop's redemption, or a top-up, writes an entry numbered by the database.
        with db.write() as session:
            entry = ledger.grant(session, budgets[0][0], 100, "test")
            session.flush()
            assert entry.id > max(entry_id for entry_id, *_ in entries)
        with db.read() as session:
            for model in (Household, Cardholder, Pass, Budget, LedgerEntry):
                ids = session.scalars(select(model.id)).all()
                assert len(ids) == len(set(ids))
            # Each pass's own row: its number with its child, as the export had them.
            numbers = dict(session.execute(select(Pass.pass_number, Cardholder.source_key)
                                           .join(Cardholder, Cardholder.id == Pass.cardholder_id)).all())
        assert numbers == {record.pass_number: record.cardholder_id for record in household_records(45)}
    finally:
        db.dispose()
