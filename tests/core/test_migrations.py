"""Migrations run forwards and backwards on both databases, and match the models."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import date, datetime, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import String, Text, inspect, text

from adapter import migrate
from adapter.cli import cli
from adapter.crypto import ENCRYPTION_KEYS_ENV, KeysMissing, Vault
from adapter.db import Database
from adapter.personal import PersonalFields, open_sealed
from adapter.schema import metadata
from tests.conftest import TEST_ENCRYPTION_KEY, production_config
from tests.fixture_personal_data import FIXTURE_BIRTH_DATES, FIXTURE_SURNAMES, TEST_BSNS, find_personal_data_at_rest

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def test_schema_matches_models_and_round_trips(database_url):
    database = Database(database_url)
    try:
        assert migrate.is_current(database)
        with database.engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), metadata)
        assert differences == []
        migrate.downgrade(database, "base")
        assert "ledger_entries" not in inspect(database.engine).get_table_names()
        assert migrate.current_revision(database) is None
        migrate.upgrade(database)
        assert set(metadata.tables) <= set(inspect(database.engine).get_table_names())
        assert migrate.is_current(database)
    finally:
        database.dispose()


def test_0006_the_redemption_index_holds_redemption_entries_only_and_is_still_used(database_url):
    database = Database(database_url)
    try:
        lookup = "SELECT id FROM ledger_entries WHERE redemption_id = 'r-1'"
        with database.engine.connect() as connection:
            if database.is_postgres:
                definition = connection.execute(text(
                    "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_ledger_entries_redemption_id'")).scalar_one()
                connection.execute(text("SET enable_seqscan = off"))  # an empty table: ask whether it can be used
                plan = " ".join(connection.execute(text(f"EXPLAIN {lookup}")).scalars())
            else:
                definition = connection.execute(text(
                    "SELECT sql FROM sqlite_master WHERE name = 'ix_ledger_entries_redemption_id'")).scalar_one()
                plan = " ".join(row[-1] for row in connection.execute(text(f"EXPLAIN QUERY PLAN {lookup}")))
            indexes = {index["name"] for index in inspect(connection).get_indexes("budgets")}
        assert "redemption_id IS NOT NULL" in definition
        assert "ix_ledger_entries_redemption_id" in plan
        assert "ix_budgets_cardholder_id" not in indexes  # the unique (cardholder, rule, period) serves instead
    finally:
        database.dispose()


# Migration 0005: six tokens per cardholder become one, and back.
SIX_FIELDS = ("bsn", "first_names", "initials", "surname_prefix", "surname", "birth_date")
PEOPLE = [
    {"bsn": TEST_BSNS[0], "first_names": "Sanne Maria", "initials": "S.M.", "surname_prefix": "van",
     "surname": FIXTURE_SURNAMES[0], "birth_date": FIXTURE_BIRTH_DATES[0]},
    {"bsn": TEST_BSNS[5], "first_names": None, "initials": "J.", "surname_prefix": None,
     "surname": FIXTURE_SURNAMES[1], "birth_date": None},
    {name: None for name in SIX_FIELDS},  # erased by retention: stays without personal data
]
OTHER_COLUMNS = ("id", "bsn_index", "content_hash", "updated_at")


def _at_0004_with_six_tokens(database: Database, vault: Vault) -> None:
    migrate.downgrade(database, "0004")  # empty: no keys needed
    with database.engine.begin() as connection:
        connection.execute(text("INSERT INTO households (id, source, source_key, created_at, updated_at) "
                                "VALUES (1, 'test', 'H1', :now, :now)"), {"now": NOW})
        for number, person in enumerate(PEOPLE, start=1):
            tokens = {f"{name}_encrypted": vault.encrypt(value) for name, value in person.items()}
            connection.execute(text(
                "INSERT INTO cardholders (id, household_id, source, source_key, status, bsn_index, content_hash, "
                "created_at, updated_at, " + ", ".join(tokens) + ") VALUES (:id, 1, 'test', :key, 'active', "
                ":bsn_index, :content_hash, :now, :now, " + ", ".join(f":{column}" for column in tokens) + ")"),
                {"id": number, "key": f"C{number}", "now": NOW, "content_hash": f"hash{number}",
                 "bsn_index": vault.blind_index(person["bsn"]) if person["bsn"] else None, **tokens})


def _other_columns(database: Database) -> list[tuple]:
    with database.engine.connect() as connection:
        return connection.execute(text(f"SELECT {', '.join(OTHER_COLUMNS)} FROM cardholders ORDER BY id")).all()


def _as_fields(person: dict[str, str | None]) -> PersonalFields:
    birth = person["birth_date"]
    return PersonalFields(**{**person, "birth_date": date.fromisoformat(birth) if birth else None})


def test_0005_seals_stored_rows_into_one_token_and_back(database_url, vault):
    database = Database(database_url)
    try:
        _at_0004_with_six_tokens(database, vault)
        before = _other_columns(database)

        migrate.upgrade(database, vault=lambda: vault)

        assert migrate.is_current(database)
        columns = {column["name"] for column in inspect(database.engine).get_columns("cardholders")}
        assert "personal_encrypted" in columns and not columns & {f"{name}_encrypted" for name in SIX_FIELDS}
        with database.engine.connect() as connection:
            tokens = connection.execute(text("SELECT personal_encrypted FROM cardholders ORDER BY id")).scalars().all()
        assert tokens[2] is None  # no personal data, no token
        assert [open_sealed(vault, token) for token in tokens] == [_as_fields(person) for person in PEOPLE]
        assert _other_columns(database) == before  # blind index, content hash and timestamps untouched

        migrate.downgrade(database, "0004", vault=lambda: vault)

        with database.engine.connect() as connection:
            rows = connection.execute(text(
                "SELECT " + ", ".join(f"{name}_encrypted" for name in SIX_FIELDS) + " FROM cardholders ORDER BY id"
            )).all()
        assert [dict(zip(SIX_FIELDS, map(vault.decrypt, row))) for row in rows] == PEOPLE
        assert _other_columns(database) == before
    finally:
        database.dispose()


def test_0005_refuses_stored_rows_without_keys_and_changes_nothing(database_url, vault):
    database = Database(database_url)
    try:
        _at_0004_with_six_tokens(database, vault)

        def no_keys() -> Vault:
            raise KeysMissing("ADAPTER_ENCRYPTION_KEYS and ADAPTER_BLIND_INDEX_KEY must be set")

        for provider in (None, no_keys):
            with pytest.raises(migrate.KeysNeeded) as refused:
                migrate.upgrade(database, vault=provider)
            message = str(refused.value)
            assert "ADAPTER_ENCRYPTION_KEYS" in message and "nothing was changed" in message
            assert find_personal_data_at_rest(message.encode()) == []
            assert migrate.current_revision(database) == "0004"
            assert _stored_bsns(database, vault) == [person["bsn"] for person in PEOPLE]
    finally:
        database.dispose()


def _stored_bsns(database: Database, vault: Vault) -> list[str]:
    """The BSNs of the cardholders as the 0004 schema stores them, decrypted: what a refused upgrade must leave."""
    with database.engine.connect() as connection:
        stored = connection.execute(text("SELECT bsn_encrypted FROM cardholders ORDER BY id")).scalars().all()
    return [vault.decrypt(token) for token in stored]


def test_0005_refuses_keys_that_cannot_open_the_stored_rows_and_changes_nothing(database_url, vault):
    """`db upgrade` from a shell without the service's own keys (new ones, or development mode's demo keys)."""
    from cryptography.fernet import Fernet

    database = Database(database_url)
    try:
        _at_0004_with_six_tokens(database, vault)
        other_keys = Vault([Fernet.generate_key().decode()], Fernet.generate_key().decode())
        with pytest.raises(migrate.KeysNeeded) as refused:
            migrate.upgrade(database, vault=lambda: other_keys)
        message = str(refused.value)
        assert "cannot be decrypted with the ADAPTER_ENCRYPTION_KEYS given" in message
        assert "the service uses" in message and "nothing was changed" in message
        assert migrate.current_revision(database) == "0004"
        assert _stored_bsns(database, vault) == [person["bsn"] for person in PEOPLE]
    finally:
        database.dispose()


def test_cli_upgrade_reads_the_keys_only_for_stored_rows(tmp_path, sqlite_url, vault, monkeypatch):
    config = production_config(tmp_path, sqlite_url)
    database = Database(sqlite_url)
    try:
        migrate.downgrade(database, "0004")
        monkeypatch.delenv(ENCRYPTION_KEYS_ENV)
        runner = CliRunner()
        empty = runner.invoke(cli, ["--config", str(config), "db", "upgrade"])
        assert empty.exit_code == 0, empty.output  # a fresh install needs no keys to create its schema

        _at_0004_with_six_tokens(database, vault)
        refused = runner.invoke(cli, ["--config", str(config), "db", "upgrade"])
        assert refused.exit_code == 1 and "re-encrypts" in refused.output and "nothing was changed" in refused.output
        assert migrate.current_revision(database) == "0004"

        monkeypatch.setenv(ENCRYPTION_KEYS_ENV, TEST_ENCRYPTION_KEY)
        upgraded = runner.invoke(cli, ["--config", str(config), "db", "upgrade"])
        assert upgraded.exit_code == 0, upgraded.output
        assert migrate.is_current(database)
    finally:
        database.dispose()


def _collations(database: Database) -> dict[tuple[str, str], str | None]:
    """(table, column) -> the collation PostgreSQL compares it under; None for the database's default."""
    with database.engine.connect() as connection:
        return {(table, column): collation for table, column, collation in connection.execute(text(
            "SELECT table_name, column_name, collation_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND data_type IN ('character varying', 'text')"))}


def _collation_in_models(column) -> str | None:  # type: ignore[no-untyped-def]
    return getattr(column.type._variant_mapping.get("postgresql", column.type), "collation", None)


def test_0008_machine_keys_compare_bytes_on_postgres_as_the_models_say_and_back(postgres_url):
    # PostgreSQL's alone: SQLite compares every text column byte by byte already (its BINARY collation).
    database = Database(postgres_url)
    try:
        # alembic's compare_metadata does not compare collations: this is what keeps models and migration one.
        wanted = {(table.name, column.name): _collation_in_models(column)
                  for table in metadata.tables.values() for column in table.columns
                  if isinstance(column.type, (String, Text))}
        actual = _collations(database)
        assert {place: actual.get(place, "no such column") for place in wanted} == wanted
        machine_keys = {place for place, collation in wanted.items() if collation == "C"}
        assert {("passes", "pass_number"), ("cardholders", "bsn_index"), ("budgets", "period_key"),
                ("idempotency_records", "key")} <= machine_keys
        migrate.downgrade(database, "0007")
        # Of the machine keys of tables 0007 had (a later table's own migration makes its collation).
        before = _collations(database)
        older = {place for place in machine_keys if place in before}
        assert older >= {("passes", "pass_number"), ("cardholders", "bsn_index"), ("budgets", "period_key")}
        assert {place: before[place] for place in older} == dict.fromkeys(older)
        migrate.upgrade(database)
        assert {place: _collations(database)[place] for place in machine_keys} == dict.fromkeys(machine_keys, "C")
    finally:
        database.dispose()


# Migration 0009: a rules key per child becomes one per source, where every active child shares it.
def _at_0008_with_judgements(database: Database) -> None:
    migrate.downgrade(database, "0008")
    with database.engine.begin() as connection:
        connection.execute(text("INSERT INTO households (id, source, source_key, created_at, updated_at) "
                                "VALUES (1, 'shared', 'H1', :now, :now)"), {"now": NOW})
        # (source, status, rules key of its judgement or None)
        holders = [("shared", "active", "K1"), ("shared", "active", "K1"), ("shared", "inactive", None),
                   ("shared", "missing", "K0"),  # only the active ones count
                   ("one-unjudged", "active", "K1"), ("one-unjudged", "active", None),
                   ("two-keys", "active", "K1"), ("two-keys", "active", "K2")]
        for number, (source, status, rules_key) in enumerate(holders, start=1):
            connection.execute(text(
                "INSERT INTO cardholders (id, household_id, source, source_key, status, created_at, updated_at) "
                "VALUES (:id, 1, :source, :key, :status, :now, :now)"),
                {"id": number, "source": source, "key": f"C{number}", "status": status, "now": NOW})
            if rules_key is not None:
                connection.execute(text("INSERT INTO grant_evaluations (cardholder_id, rules_key, evaluated_at) "
                                        "VALUES (:id, :rules_key, :now)"),
                                   {"id": number, "rules_key": rules_key, "now": NOW})


def test_0009_keeps_a_source_s_key_only_when_every_active_child_was_judged_under_it_and_goes_back(database_url):
    database = Database(database_url)
    try:
        _at_0008_with_judgements(database)
        migrate.upgrade(database)
        with database.engine.connect() as connection:
            kept = connection.execute(text("SELECT source, rules_key FROM grant_judgements")).all()
        assert kept == [("shared", "K1")]
        assert "grant_evaluations" not in inspect(database.engine).get_table_names()
        migrate.downgrade(database, "0008")
        with database.engine.connect() as connection:
            # Empty: every child is judged again at the next sync, which grants nothing twice.
            assert connection.execute(text("SELECT COUNT(*) FROM grant_evaluations")).scalar_one() == 0
        assert "grant_judgements" not in inspect(database.engine).get_table_names()
        migrate.upgrade(database)
    finally:
        database.dispose()


def _upgraded_only_with_keys(database: Database, vault: Vault, *, at: str, refusal: str) -> None:
    """Upgraded from ``at``: refused without keys, saying ``refusal``, and left at ``at``; then done with them."""
    with pytest.raises(migrate.KeysNeeded, match=refusal):
        migrate.upgrade(database)
    assert migrate.current_revision(database) == at
    migrate.upgrade(database, vault=lambda: vault)


def test_0010_keys_the_stored_request_fingerprints_so_a_retry_across_the_upgrade_still_matches(database_url, vault):
    """A record written before 0010 holds the SHA-256 of its request; after the upgrade it holds what the keyed
    fingerprint of the same request is, and without keys the upgrade refuses and changes nothing."""
    import hashlib
    from datetime import datetime, timezone

    from adapter.crypto import request_fingerprint
    from tests import factories

    database = Database(database_url)
    try:
        shop = factories.merchant(database)
        migrate.downgrade(database, "0009")
        canonical = '["POST /v1/redemptions",{"amount_cents":100,"pass_number":"6400000000000011"}]'
        with database.engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO idempotency_records (merchant_id, key, request_hash, outcome_json, created_at) "
                "VALUES (:merchant, 'k1', :hash, '{}', :at)"),
                {"merchant": shop.merchant_id, "hash": hashlib.sha256(canonical.encode()).hexdigest(),
                 "at": datetime.now(timezone.utc)})
        _upgraded_only_with_keys(database, vault, at="0009", refusal="fingerprints that this migration keys")
        with database.engine.connect() as connection:
            stored = connection.execute(text("SELECT request_hash FROM idempotency_records")).scalar_one()
        # The same text the service builds for that request: its retry across the upgrade matches the record.
        assert stored == request_fingerprint(vault.hashes, "POST /v1/redemptions",
                                             {"pass_number": "6400000000000011", "amount_cents": 100})
    finally:
        database.dispose()


def test_0011_works_out_the_stored_budgets_age_bands_with_the_keys_and_refuses_without(database_url, vault):
    """Every stored budget gets its child's band on its first day, also a source's that is never synced again
    (the reports would decrypt every birth date for as long as one budget had none); a pseudonymised child's is
    unknown. Without keys the upgrade refuses and changes nothing."""
    from sqlalchemy import update

    from adapter.models import Budget, Cardholder
    from tests import factories

    database = Database(database_url)
    try:
        child = factories.child_with_budget(database, vault, period=(date(2026, 1, 1), date(2026, 12, 31)))
        gone = factories.child_with_budget(database, vault, bsn=TEST_BSNS[1])
        with database.write() as session:  # born 2015-05-05 (FIXTURE_BIRTH_DATES[0])
            session.add(Budget(cardholder_id=child.cardholder_id, rule_code="school", rule_name="Schoolspullen",
                               period_key="2016", period_start=date(2016, 1, 1), period_end=date(2016, 12, 31)))
            session.execute(update(Cardholder).where(Cardholder.id == gone.cardholder_id)
                            .values(personal_encrypted=None, source="vroeger"))
        migrate.downgrade(database, "0010")
        _upgraded_only_with_keys(database, vault, at="0010", refusal="age bands")
        with database.engine.connect() as connection:
            bands = connection.execute(text("SELECT cardholder_id, period_start, age_band FROM budgets")).all()
    finally:
        database.dispose()
    assert sorted((holder, str(first_day), band) for holder, first_day, band in bands) == sorted([
        (child.cardholder_id, "2026-01-01", "4-11"), (child.cardholder_id, "2016-01-01", "0-3"),
        (gone.cardholder_id, "2026-01-01", "unknown")])


def test_two_hosts_upgrading_an_empty_postgres_database_at_once_both_succeed(postgres_databases):
    # Each host of a scale-out runs `db upgrade` at its deployment, and two deployments can start together. Separate
    # processes, as hosts are: Alembic's migration context is one per process.
    url = postgres_databases.empty()
    start_at = time.time() + 3  # past every process's imports, so their migrations overlap
    upgrade = ("import sys, time; from adapter import migrate; from adapter.db import Database; "
               "time.sleep(max(0, float(sys.argv[2]) - time.time())); migrate.upgrade(Database(sys.argv[1]))")
    hosts = [subprocess.Popen([sys.executable, "-c", upgrade, url, str(start_at)], stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    failures = [host.stderr.read()[-400:] for host in hosts if host.wait(timeout=60) != 0]
    assert failures == []  # none fails on a table another host created a moment before
    database = Database(url)
    try:
        assert migrate.is_current(database)
    finally:
        database.dispose()


def test_an_older_host_is_told_a_newer_version_migrated_the_database(tmp_path, sqlite_url):
    """A scale-out upgraded host by host: the database is ahead of the code on a host not yet upgraded."""
    database = Database(sqlite_url)
    try:
        with database.engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = '0099'"))  # a later version's
        with pytest.raises(migrate.SchemaNewerThanCode, match="0099.*Install that version here"):
            migrate.upgrade(database)
        config = tmp_path / "adapter.yaml"
        config.write_text(json.dumps({"environment": "development", "data_dir": str(tmp_path / "var"),
                                      "database": {"url": sqlite_url}}), encoding="utf-8")
        for command in (["db", "upgrade"], ["db", "current"]):
            refused = CliRunner().invoke(cli, ["--config", str(config), *command])
            assert refused.exit_code == 1 and "running a newer version migrated it" in refused.output
        assert migrate.current_revision(database) == "0099"
    finally:
        database.dispose()


def test_the_api_and_the_scheduler_refuse_to_start_on_a_schema_that_is_not_theirs(tmp_path, sqlite_url, monkeypatch):
    """The new version installed and started before `db upgrade` (or an older host after a newer one migrated): the
    operator is told at the start what to run, instead of an API that answers every request with a 503 and a
    scheduler whose every night's sync fails. A 0009 database served by this version would also get request
    fingerprints that the upgrade to 0010 then keys a second time, so a till's retry would be refused."""
    started = []
    monkeypatch.setattr("adapter.api.server.serve", lambda *args, **kwargs: started.append("api"))
    monkeypatch.setattr("adapter.scheduler.run_scheduler", lambda *args, **kwargs: started.append("scheduler"))
    config = production_config(tmp_path, sqlite_url)
    database = Database(sqlite_url)
    try:
        migrate.downgrade(database, "0009")
        for command in (["serve", "--port", "1"], ["scheduler"]):
            refused = CliRunner().invoke(cli, ["--config", str(config), *command])
            assert refused.exit_code == 1, refused.output
            assert "is at schema revision 0009" in refused.output and "run `stadspas-adapter db upgrade` first" \
                in refused.output
        with database.engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = '0099'"))  # a later version's
        for command in (["serve", "--port", "1"], ["scheduler"]):
            refused = CliRunner().invoke(cli, ["--config", str(config), *command])
            assert refused.exit_code == 1 and "running a newer version migrated it" in refused.output
        assert started == []

        with database.engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = '0009'"))
        migrate.upgrade(database)
        for command in (["serve", "--port", "1"], ["scheduler"]):
            assert CliRunner().invoke(cli, ["--config", str(config), *command]).exit_code == 0
        assert started == ["api", "scheduler"]
    finally:
        database.dispose()


def test_a_sync_on_an_older_schema_says_to_run_db_upgrade(tmp_path, sqlite_url):
    """Not "run the sync again; if it fails the same way, report this line": it would fail every time."""
    from tests.conftest import REPO

    config = tmp_path / "adapter.yaml"
    config.write_text(json.dumps({
        "environment": "production", "data_dir": str(tmp_path / "var"), "database": {"url": sqlite_url},
        "budgets": str(REPO / "config" / "budgets.yaml"),
        "sources": {"demo": {"connector": "csv", "mapping": str(REPO / "mappings" / "demo-csv.yaml"),
                             "options": {"path": str(REPO / "connectors" / "samples" / "csv" / "exports")}}}}),
        encoding="utf-8")
    database = Database(sqlite_url)
    try:
        migrate.downgrade(database, "0004")  # before one token per cardholder: the sync reads a column not there
        result = CliRunner().invoke(cli, ["--config", str(config), "sync", "demo"])
        assert result.exit_code == 1
        said = result.output.strip().splitlines()[-1]  # the terminal's line, after the sync's own log lines
        assert said.startswith("Error: sync demo: the database is at schema revision 0004")
        assert "run `stadspas-adapter db upgrade` first" in said and "report this line" not in said
    finally:
        database.dispose()


def test_commands_on_an_older_schema_say_to_run_db_upgrade_not_a_traceback(tmp_path, database_url, vault):
    """`keys check` and `keys rotate` read a column the older schema does not have yet."""
    config = production_config(tmp_path, database_url)
    database = Database(database_url)
    try:
        _at_0004_with_six_tokens(database, vault)
        for command in (["keys", "check"], ["keys", "rotate"]):
            refused = CliRunner().invoke(cli, ["--config", str(config), *command])
            assert refused.exit_code == 1 and isinstance(refused.exception, SystemExit), (command, refused.output)
            assert "run `stadspas-adapter db upgrade` first" in refused.output, (command, refused.output)
        migrate.upgrade(database, vault=lambda: vault)
    finally:
        database.dispose()
