"""Bulk inserts and bulk budget opening: what goes in comes back, on both databases."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest
from sqlalchemy import func, inspect, select, text
from sqlalchemy.exc import IntegrityError

from adapter import bulk, ledger
from adapter.bulk import index_built_after, insert_rows, insert_tuples, reserve_ids
from adapter.db import Database
from adapter.models import (
    Budget,
    BudgetStatus,
    Cardholder,
    EntryKind,
    HolderStatus,
    Household,
    LedgerEntry,
    Pass,
    PassState,
)
from tests import factories

STAMP = datetime(2026, 9, 1, 4, 30, 15, 123456, tzinfo=timezone.utc)


def _household(db) -> int:  # type: ignore[no-untyped-def]
    with db.write() as session:
        insert_rows(session, Household.__table__, [{"source_key": "H1"}],
                    {"source": "bulk", "created_at": STAMP, "updated_at": STAMP})
        return session.execute(select(Household.id)).scalar_one()


def test_tuples_come_back_as_the_values_put_in(db):
    household_id = _household(db)
    with db.write() as session:
        insert_tuples(session, Cardholder.__table__, ("household_id", "source_key", "is_child", "bsn_index"),
                      [(household_id, "C1", True, "abc"), (household_id, "C2", False, None),
                       (household_id, "C3", None, "def")],
                      {"source": "bulk", "status": HolderStatus.MISSING, "missing_since": date(2026, 8, 31),
                       "created_at": STAMP, "updated_at": STAMP})
        holder_ids = dict(session.execute(select(Cardholder.source_key, Cardholder.id)).all())
        insert_tuples(session, Pass.__table__, ("cardholder_id", "pass_number", "status", "valid_from", "valid_until"),
                      [(holder_ids["C1"], "0640000000001", PassState.BLOCKED.value, date(2026, 8, 1), None),
                       (holder_ids["C2"], "0640000000002", "active", None, date(2027, 7, 31))],
                      {"created_at": STAMP, "updated_at": STAMP})
    with db.read() as session:
        holders = session.execute(select(Cardholder.source_key, Cardholder.is_child, Cardholder.bsn_index,
                                         Cardholder.status, Cardholder.missing_since, Cardholder.created_at)
                                  .order_by(Cardholder.source_key)).all()
        passes = session.execute(select(Pass.pass_number, Pass.status, Pass.valid_from, Pass.valid_until)
                                 .order_by(Pass.pass_number)).all()
    assert [tuple(row) for row in holders] == [
        ("C1", True, "abc", HolderStatus.MISSING, date(2026, 8, 31), STAMP),
        ("C2", False, None, HolderStatus.MISSING, date(2026, 8, 31), STAMP),
        ("C3", None, "def", HolderStatus.MISSING, date(2026, 8, 31), STAMP),
    ]
    assert [tuple(row) for row in passes] == [
        ("0640000000001", PassState.BLOCKED, date(2026, 8, 1), None),
        ("0640000000002", PassState.ACTIVE, None, date(2027, 7, 31)),
    ]


def test_values_shared_by_every_row_are_stored_as_given_whatever_they_hold(db):
    # On SQLite they are written into the statement as literals: quotes and SQL in them stay text.
    source = "bulk'); DROP TABLE households; --"
    with db.write() as session:
        insert_tuples(session, Household.__table__, ("source_key",), [("H1",), ("H'2",)],
                      {"source": source, "created_at": STAMP, "updated_at": STAMP})
    with db.read() as session:
        rows = session.execute(select(Household.source_key, Household.source, Household.created_at)
                               .order_by(Household.source_key)).all()
    assert [tuple(row) for row in rows] == [("H'2", source, STAMP), ("H1", source, STAMP)]


def test_a_shared_value_not_rendered_as_a_literal_is_bound_on_every_row():
    from sqlalchemy.dialects import sqlite

    dialect = sqlite.dialect()
    assert bulk._sqlite_literals(("it's", 7, None), dialect) == ["'it''s'", "7", "NULL"]
    assert bulk._sqlite_literals(("text", b"bytes"), dialect) is None
    assert bulk._sqlite_literals(("nul\x00inside",), dialect) is None
    assert bulk._sqlite_literals((True,), dialect) is None  # processed to 1 before it gets here; else bound


def test_a_state_the_column_does_not_know_is_refused(db):
    household_id = _household(db)
    with pytest.raises((LookupError, ValueError)), db.write() as session:
        insert_tuples(session, Cardholder.__table__, ("household_id", "source_key", "status"),
                      [(household_id, "C1", "on holiday")], {"source": "bulk", "created_at": STAMP,
                                                            "updated_at": STAMP})


def test_reserved_ids_are_new_and_never_handed_out_twice(db, vault):
    child = factories.child_with_budget(db, vault)
    with db.write() as session:
        first = list(reserve_ids(session, Budget.__table__, 3))
        assert len(set(first)) == 3 and min(first) > child.budget_id
        if db.is_postgres:  # the sequence moves on; SQLite's are taken under its one write lock
            assert not set(first) & set(reserve_ids(session, Budget.__table__, 2))
    with db.write() as session:
        assert list(reserve_ids(session, Budget.__table__, 0)) == []


@pytest.mark.postgres
def test_postgresql_hands_out_reserved_ids_as_one_run_when_nobody_else_took_any(postgres_url):
    """The server answers with the bounds of the ids it took (no id travels): they must be exactly the
    ones the sequence gave, so the next row numbered by the database comes after them."""
    database = Database(postgres_url)
    try:
        with database.write() as session:
            reserved = reserve_ids(session, Budget.__table__, 5000)
            assert isinstance(reserved, range) and len(reserved) == 5000
            following = session.execute(text("SELECT nextval(pg_get_serial_sequence('budgets', 'id'))")).scalar_one()
            assert following == reserved[-1] + 1
    finally:
        database.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("sequence_state", ["never used", "used", "counting in twos"])
def test_postgresql_takes_a_run_for_a_locked_table_in_one_move_and_numbers_the_next_row_after_it(
        postgres_url, sequence_state):
    """``alone`` (the caller holds the table locked): one unbroken run from the sequence's next id on, and
    the sequence goes on after it, whether it was never used, used, or counts in twos (where ids drawn one
    by one would not be one run)."""
    database = Database(postgres_url)
    try:
        with database.write() as session:
            if sequence_state == "counting in twos":
                session.execute(text("ALTER SEQUENCE budgets_id_seq INCREMENT BY 2"))
            if sequence_state == "never used":
                session.execute(text("ALTER SEQUENCE budgets_id_seq RESTART"))
            else:
                session.execute(text("SELECT nextval('budgets_id_seq')"))
            last, called, step = session.execute(text(
                "SELECT s.last_value, s.is_called, p.increment_by FROM budgets_id_seq s, pg_sequences p "
                "WHERE p.sequencename = 'budgets_id_seq'")).one()
            session.execute(text("LOCK TABLE budgets IN ACCESS EXCLUSIVE MODE"))
            reserved = reserve_ids(session, Budget.__table__, 5000, alone=True)
            assert reserved == range(last + step if called else last, (last + step if called else last) + 5000)
            following = session.execute(text("SELECT nextval('budgets_id_seq')")).scalar_one()
            assert following == reserved[-1] + step
    finally:
        database.dispose()


@pytest.mark.postgres
def test_postgresql_draws_ids_one_by_one_for_a_table_the_caller_does_not_hold_locked(postgres_url):
    """``alone`` is checked, not trusted: without the lock another writer may draw from the sequence at
    any moment, so the ids are drawn one by one (here, from a sequence counting in twos, not one run)."""
    database = Database(postgres_url)
    try:
        with database.write() as session:
            session.execute(text("ALTER SEQUENCE budgets_id_seq INCREMENT BY 2"))
            first = session.execute(text("SELECT nextval('budgets_id_seq')")).scalar_one()
            session.execute(text("LOCK TABLE budgets IN SHARE MODE"))  # a lock, but not against writers
            assert list(reserve_ids(session, Budget.__table__, 3, alone=True)) == [first + 2, first + 4, first + 6]
    finally:
        database.dispose()


@pytest.mark.postgres
def test_postgresql_ids_that_are_not_one_run_are_read_back_one_by_one(postgres_url):
    """Another writer taking numbers meanwhile leaves gaps: then the ids taken are read back, not guessed
    from their bounds. Gaps are made here by a sequence that counts in twos."""
    database = Database(postgres_url)
    try:
        with database.write() as session:
            session.execute(text("ALTER SEQUENCE budgets_id_seq INCREMENT BY 2"))
            first = session.execute(text("SELECT nextval('budgets_id_seq')")).scalar_one()
            reserved = list(reserve_ids(session, Budget.__table__, 4))
            assert reserved == [first + 2, first + 4, first + 6, first + 8]
    finally:
        database.dispose()


def _reserving_worker(database_url: str, alone: bool, start, results) -> None:  # type: ignore[no-untyped-def]
    """One process of the race below: 15 transactions each reserving 2,000 budget ids, as a sync's grants do.
    ``alone``: each first locks the table, as a first load holds it."""
    database = Database(database_url)
    try:
        start.wait(60)
        for _ in range(15):
            with database.write() as session:
                if alone:
                    session.execute(text("LOCK TABLE budgets IN EXCLUSIVE MODE"))
                results.put((alone, list(reserve_ids(session, Budget.__table__, 2000, alone=alone))))
    finally:
        database.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("alone", [False, True], ids=["drawn one by one", "moved in one run under the lock"])
def test_processes_reserving_ids_at_once_never_get_the_same_id(postgres_url, alone):
    """Syncs of several sources, in processes of their own, reserve ids from one sequence at the same time: no
    two may get the same id (the primary key would refuse the second row and fail that sync), and each must get
    exactly as many as it asked for, each once. Under the lock (a first load's) each run is one unbroken run."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    start, results = context.Event(), context.Queue()
    workers = [context.Process(target=_reserving_worker, args=(postgres_url, alone, start, results))
               for _ in range(4)]
    for worker in workers:
        worker.start()
    start.set()
    batches = [results.get(timeout=120) for _ in range(4 * 15)]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    taken = [budget_id for _alone, ids in batches for budget_id in ids]
    assert len(taken) == len(set(taken)) == 4 * 15 * 2000
    for _alone, ids in batches:
        assert len(ids) == 2000 and ids == sorted(set(ids))
        if alone:
            assert ids == list(range(ids[0], ids[0] + 2000))


def test_a_failed_bulk_insert_raises_what_sqlalchemy_would_without_the_values(db):
    household_id = _household(db)
    with pytest.raises(IntegrityError) as raised, db.write() as session:
        insert_tuples(session, Cardholder.__table__, ("household_id", "source_key", "bsn_index"),
                      [(household_id, "C1", "secret-index-1"), (household_id, "C1", "secret-index-2")],
                      {"source": "bulk", "status": HolderStatus.ACTIVE, "created_at": STAMP, "updated_at": STAMP})
    assert "secret-index" not in str(raised.value)
    assert "uq_cardholders_source_key" in str(raised.value) or "UNIQUE" in str(raised.value)


def _new_budget(cardholder_id: int, rule_code: str, amount_cents: int) -> ledger.NewBudget:
    return ledger.NewBudget(cardholder_id, rule_code, rule_code.title(), 2, "school", "2026", date(2026, 8, 1),
                            date(2027, 7, 31), amount_cents)


@pytest.mark.parametrize("ids", ["one run", "scattered"])
def test_open_budgets_writes_each_budget_with_its_one_grant(db, vault, monkeypatch, ids):
    if ids == "scattered":
        # What PostgreSQL hands out when another session took ids meanwhile: not one run, so no range.
        reserve = ledger.reserve_ids
        monkeypatch.setattr(ledger, "reserve_ids", lambda session, table, count, **options:
                            list(reserve(session, table, count, **options)))
    children = [factories.child_with_budget(db, vault) for _ in range(3)]
    wanted = [_new_budget(child.cardholder_id, rule, cents)
              for child in children for rule, cents in (("sport", 7_500), ("culture", 2_501))]
    with db.write() as session:
        assert ledger.open_budgets(session, wanted, "sync:test", note="first grant") == 6
    # A budget opened the ordinary way afterwards gets an id of its own.
    later = factories.child_with_budget(db, vault)
    with db.read() as session:
        budgets = session.execute(
            select(Budget.id, Budget.cardholder_id, Budget.rule_code, Budget.rule_version, Budget.period_start,
                   Budget.granted_cents, Budget.balance_cents, Budget.status)
            .where(Budget.rule_code.in_(["sport", "culture"]))).all()
        entries = session.execute(
            select(LedgerEntry.budget_id, LedgerEntry.kind, LedgerEntry.amount_cents,
                   LedgerEntry.balance_after_cents, LedgerEntry.actor, LedgerEntry.note)
            .where(LedgerEntry.budget_id.in_([row.id for row in budgets]))).all()
        assert ledger.verify(session) == []
        assert session.execute(select(func.count()).select_from(Budget)).scalar_one() == 10
        # One entry for each budget, the four others' included: none of theirs is copied again.
        assert session.execute(select(func.count()).select_from(LedgerEntry)).scalar_one() == 10
        entry_order = session.execute(select(LedgerEntry.budget_id).where(LedgerEntry.budget_id.in_(
            [row.id for row in budgets])).order_by(LedgerEntry.id)).scalars().all()
    assert entry_order == sorted(entry_order), "the entries come in the order of their budgets"
    assert later.budget_id not in {row.id for row in budgets}
    assert sorted((row.cardholder_id, row.rule_code, row.granted_cents, row.balance_cents) for row in budgets) == \
        sorted((new.cardholder_id, new.rule_code, new.amount_cents, new.amount_cents) for new in wanted)
    assert {(row.rule_version, row.period_start, row.status) for row in budgets} == {
        (2, date(2026, 8, 1), BudgetStatus.OPEN)}
    by_budget = {row.id: row.granted_cents for row in budgets}
    assert sorted((entry.budget_id, entry.amount_cents) for entry in entries) == sorted(by_budget.items())
    assert {(entry.kind, entry.actor, entry.note) for entry in entries} == {(EntryKind.GRANT, "sync:test",
                                                                            "first grant")}
    assert all(entry.balance_after_cents == entry.amount_cents for entry in entries)


def test_opening_a_budget_twice_fails_and_grants_nothing(db, vault):
    child = factories.child_with_budget(db, vault)
    with db.write() as session:
        ledger.open_budgets(session, [_new_budget(child.cardholder_id, "sport", 7_500)], "test")
    with pytest.raises(IntegrityError), db.write() as session:
        ledger.open_budgets(session, [_new_budget(child.cardholder_id, "sport", 7_500)], "test")
    with db.read() as session:
        assert session.execute(select(func.count()).select_from(LedgerEntry)).scalar_one() == 2
        assert ledger.verify(session) == []


def test_open_budgets_refuses_a_non_positive_amount_before_writing(db, vault):
    child = factories.child_with_budget(db, vault)
    with pytest.raises(ledger.LedgerError), db.write() as session:
        ledger.open_budgets(session, [_new_budget(child.cardholder_id, "sport", 0)], "test")


SPORT = ("sport", "Sport", 2, "school", "2026", date(2026, 8, 1), date(2027, 7, 31), "4-11")
CULTURE = ("culture", "Culture", 1, None, "2026", date(2026, 8, 1), date(2027, 7, 31), "12-17")


def test_budgets_opened_rule_by_rule_skip_a_rule_with_none_and_keep_each_amount_with_its_child(db, vault):
    children = [factories.child_with_budget(db, vault).cardholder_id for _ in range(2)]
    with db.write() as session:
        opened = ledger.open_rule_budgets(session, [(SPORT, [(children[0], 7_500), (children[1], 2_500)]),
                                                    (CULTURE, [])], "sync:test")
    assert opened == 2
    with db.read() as session:
        rows = session.execute(select(Budget.cardholder_id, Budget.rule_code, Budget.category, Budget.age_band,
                                      Budget.granted_cents, LedgerEntry.amount_cents)
                               .join(LedgerEntry, LedgerEntry.budget_id == Budget.id)
                               .where(Budget.rule_code.in_(["sport", "culture"]))).all()
        assert ledger.verify(session) == []
    assert sorted(rows) == [(children[0], "sport", "school", "4-11", 7_500, 7_500),
                            (children[1], "sport", "school", "4-11", 2_500, 2_500)]


def test_budgets_opened_rule_by_rule_refuse_shared_fields_that_do_not_name_every_shared_column(db, vault):
    """SQLite's path pairs the shared fields with their columns by name: one missing would go unnoticed there."""
    child = factories.child_with_budget(db, vault).cardholder_id
    with db.write() as session:
        with pytest.raises(ValueError, match="8 shared fields"):
            ledger.open_rule_budgets(session, [(SPORT[:-1], [(child, 7_500)])], "test")


@pytest.mark.parametrize("amount", [0, -1, True, 12.5], ids=["zero", "negative", "a flag", "a fraction"])
def test_budgets_opened_rule_by_rule_refuse_an_amount_that_is_not_positive_whole_cents_before_writing(
        db, vault, amount):
    child = factories.child_with_budget(db, vault).cardholder_id
    with db.write() as session:
        with pytest.raises(ledger.LedgerError, match="positive whole number of cents"):
            ledger.open_rule_budgets(session, [(SPORT, [(child, 7_500)]), (CULTURE, [(child, amount)])], "test")
        # Seen inside the same transaction, before any rollback: the good rule's budget was not written either.
        assert session.scalar(select(func.count()).select_from(Budget).where(Budget.rule_code == "sport")) == 0


# index_built_after: a random-key index is built once after a large insert on SQLite, inside the transaction.
BSN_INDEX = next(index for index in Cardholder.__table__.indexes if index.name == "ix_cardholders_bsn_index")


def _has_bsn_index(session) -> bool:  # type: ignore[no-untyped-def]
    return BSN_INDEX.name in {index["name"] for index in inspect(session.connection()).get_indexes("cardholders")}


def _insert_holders(session, household_id: int, count: int, start: int = 0) -> None:  # type: ignore[no-untyped-def]
    insert_tuples(session, Cardholder.__table__, ("household_id", "source_key", "bsn_index"),
                  [(household_id, f"K{number}", f"{number * 7919 % 1000:064x}")
                   for number in range(start, start + count)],
                  {"source": "bulk", "status": HolderStatus.ACTIVE, "created_at": STAMP, "updated_at": STAMP})


def test_a_large_insert_builds_the_index_after_its_rows_on_sqlite_and_keeps_it_in_place_on_postgresql(
        db, monkeypatch):
    monkeypatch.setattr(bulk, "_REBUILD_FROM", 10)
    household_id = _household(db)
    with db.write() as session:
        with index_built_after(session, BSN_INDEX, rows_coming=50):
            assert _has_bsn_index(session) is db.is_postgres  # SQLite: dropped while the rows go in
            _insert_holders(session, household_id, 50)
        assert _has_bsn_index(session)
    with db.read() as session:
        assert _has_bsn_index(session)
        wanted = f"{7 * 7919 % 1000:064x}"
        assert session.execute(select(Cardholder.source_key).where(Cardholder.bsn_index == wanted)).scalars().all() \
            == ["K7"]
        if db.is_sqlite:
            plan = " ".join(row[-1] for row in session.execute(
                text("EXPLAIN QUERY PLAN SELECT id FROM cardholders WHERE bsn_index = :wanted"), {"wanted": wanted}))
            assert BSN_INDEX.name in plan


def test_the_index_stays_for_an_insert_smaller_than_the_table_or_the_threshold(db, monkeypatch):
    monkeypatch.setattr(bulk, "_REBUILD_FROM", 10)
    household_id = _household(db)
    with db.write() as session:
        _insert_holders(session, household_id, 40)
    with db.write() as session:
        with index_built_after(session, BSN_INDEX, rows_coming=30):  # fewer than the 40 held: not worth a rebuild
            assert _has_bsn_index(session)
            _insert_holders(session, household_id, 30, start=40)
        with index_built_after(session, BSN_INDEX, rows_coming=5):  # under the threshold
            assert _has_bsn_index(session)


def test_a_failed_run_leaves_the_index_as_it_was(db, monkeypatch):
    monkeypatch.setattr(bulk, "_REBUILD_FROM", 10)
    household_id = _household(db)
    with pytest.raises(IntegrityError):
        with db.write() as session:
            with index_built_after(session, BSN_INDEX, rows_coming=50):
                _insert_holders(session, household_id, 50)
                _insert_holders(session, household_id, 1)  # K0 again: the unique (source, key) refuses it
    with db.read() as session:
        assert _has_bsn_index(session)
        assert session.execute(select(func.count()).select_from(Cardholder)).scalar_one() == 0


def test_rows_that_cannot_be_made_stop_the_insert_with_their_own_error_and_the_server_hears_no_value(
        db, monkeypatch):
    """A row generator that fails raises its own error here; on PostgreSQL the COPY it fed is ended with a
    fixed text, not the error's (which the server would log: a KeyError names its key)."""
    sent: list[str] = []
    if db.is_postgres:
        import psycopg._copy as copying

        finish = copying.LibpqWriter.finish

        def noting(self, exc=None):  # type: ignore[no-untyped-def]
            sent.append("" if exc is None else f"{type(exc).__qualname__} - {exc}")
            return finish(self, exc)

        monkeypatch.setattr(copying.LibpqWriter, "finish", noting)

    def rows():  # type: ignore[no-untyped-def]
        yield ("H1",)
        raise KeyError("H000123-K1")

    with pytest.raises(KeyError, match="H000123-K1"), db.write() as session:
        insert_tuples(session, Household.__table__, ("source_key",), rows(),
                      {"source": "bulk", "created_at": STAMP, "updated_at": STAMP})
    if db.is_postgres:
        assert len(sent) == 1 and "could not be made" in sent[0] and "H000123" not in sent[0]
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(Household)) == 0


@pytest.mark.parametrize("entry_ids", [range(10, 12), range(10, 16, 2), [10, 11, 12]], ids=["short", "gaps", "list"])
def test_first_grants_refuse_entry_ids_that_are_not_one_run_as_long_as_the_budgets(db, entry_ids):
    """Each entry's id is its budget's plus one offset: only one unbroken run, one id a budget, makes that true."""
    with pytest.raises(ValueError, match="one unbroken run"), db.write() as session:
        ledger._write_first_grants(session, range(1, 4), {"kind": ledger.EntryKind.GRANT, "actor": "test",
                                                          "note": None, "created_at": STAMP}, entry_ids)


@pytest.mark.postgres
def test_first_grants_asked_to_take_their_ids_alone_without_the_lock_still_name_their_own_budgets(postgres_url, vault):
    """``alone`` without the lock (a caller that was wrong about it): the entries' ids come one by one and need
    not be one run (here the ledger's sequence counts in twos); then each entry draws its own, and the grant
    is written all the same, each entry naming its budget with the budget's amount."""
    database = Database(postgres_url)
    try:
        children = [factories.child_with_budget(database, vault) for _ in range(2)]
        with database.write() as session:
            session.execute(text("ALTER SEQUENCE ledger_entries_id_seq INCREMENT BY 2"))
            opened = ledger.open_rule_budgets(session, [(("extra", "Extra", 1, "school", "2026", date(2026, 8, 1),
                                                          date(2027, 7, 31), "4-11"),
                                                         [(child.cardholder_id, 1_000 + n) for n, child in
                                                          enumerate(children)])], "sync:test", alone=True)
            assert opened == 2
        with database.read() as session:
            rows = session.execute(select(Budget.cardholder_id, LedgerEntry.amount_cents, Budget.balance_cents)
                                   .join(LedgerEntry, LedgerEntry.budget_id == Budget.id)
                                   .where(Budget.rule_code == "extra").order_by(Budget.id)).all()
        assert [tuple(row) for row in rows] == [(child.cardholder_id, 1_000 + n, 1_000 + n)
                                                for n, child in enumerate(children)]
    finally:
        database.dispose()
