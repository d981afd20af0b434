"""The CLI gives the dashboard's figures, makes admins once and settles a month."""

from __future__ import annotations

import json
from datetime import date

import yaml
from click.testing import CliRunner
from sqlalchemy import select

from adapter import admins, ledger, reports, settlement
from adapter.audit import AuditEntry
from adapter.cli import cli
from adapter.db import Database
from adapter.models import utcnow
from adapter.periods import local_day, parse_period
from tests import factories


def _config(tmp_path, database_url) -> str:  # type: ignore[no-untyped-def]
    path = tmp_path / "adapter.yaml"
    path.write_text(yaml.safe_dump({
        "environment": "development", "data_dir": str(tmp_path / "var"), "database": {"url": database_url},
        "settlement": {"debtor_name": "Gemeente Voorbeeldstad", "debtor_iban": "NL02ABNA0123456789"}}))
    return str(path)


def test_admins_add_prints_a_password_once_and_stores_only_its_hash(database_url, tmp_path):  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(cli, ["--config", _config(tmp_path, database_url), "admins", "add", "alice"])
    assert result.exit_code == 0, result.output
    password = result.output.split("password: ")[1].split()[0]
    db = Database(database_url)
    try:
        with db.read() as session:
            account = session.execute(select(admins.AdminAccount)).scalar_one()
            assert password not in account.password_hash and account.password_hash.startswith("scrypt$")
            assert admins.authenticate(session, "alice", password) is not None
            assert admins.authenticate(session, "alice", password + "x") is None
            actions = session.execute(select(AuditEntry.action, AuditEntry.actor)).all()
        from adapter.cli.base import operator_actor

        assert actions == [("admin.created", operator_actor())]  # the operator, not one shared name
        again = CliRunner().invoke(cli, ["--config", _config(tmp_path, database_url), "admins", "add", "alice"])
        assert again.exit_code != 0 and "already exists" in again.output
    finally:
        db.dispose()


def test_report_json_equals_the_dashboard_tables(db, vault, database_url, tmp_path):  # type: ignore[no-untyped-def]
    year = local_day(utcnow()).year
    child = factories.child_with_budget(db, vault, amount_cents=4_000, period=(date(year, 1, 1), date(year, 12, 31)))
    shop = factories.merchant(db)
    ledger.redeem(db, ledger.RedemptionRequest(merchant_id=shop.merchant_id, budget_id=child.budget_id,
                                               pass_id=child.pass_id, amount_cents=1_234, actor="test"))
    config = _config(tmp_path, database_url)
    for kind in reports.REPORT_KINDS:
        result = CliRunner().invoke(cli, ["--config", config, "report", kind, "--period", str(year),
                                          "--format", "json"])
        assert result.exit_code == 0, result.output
        with db.read() as session:
            expected = {table.name: table.as_records()
                        for table in reports.report_tables(kind, session, vault, parse_period(str(year)))}
        assert json.loads(result.output)["tables"] == expected
    table = CliRunner().invoke(cli, ["--config", config, "report", "spending", "--period", str(year)])
    assert "12,34" in table.output
    bad = CliRunner().invoke(cli, ["--config", config, "report", "uptake", "--period", "juni"])
    assert bad.exit_code != 0 and "YYYY-MM" in bad.output


def test_report_csv_of_several_tables_starts_with_the_one_byte_order_mark_excel_needs(  # type: ignore[no-untyped-def]
        db, vault, database_url, tmp_path):
    """`report spending --format csv > besteding.csv` opened in Excel: without the mark at the very start Excel
    reads Windows-1252 (a shop's é turns into Ã©), and a mark before the second table shows in its header."""
    year = local_day(utcnow()).year
    child = factories.child_with_budget(db, vault, amount_cents=4_000, period=(date(year, 1, 1), date(year, 12, 31)))
    shop = factories.merchant(db, "Café De Hoek")
    ledger.redeem(db, ledger.RedemptionRequest(merchant_id=shop.merchant_id, budget_id=child.budget_id,
                                               pass_id=child.pass_id, amount_cents=1_234, actor="test"))
    result = CliRunner().invoke(cli, ["--config", _config(tmp_path, database_url), "report", "spending",
                                      "--period", str(year), "--format", "csv"])
    assert result.exit_code == 0, result.output
    bom = "\ufeff".encode("utf-8")
    assert result.stdout_bytes.startswith(bom) and result.stdout_bytes.count(bom) == 1
    text = result.stdout_bytes.decode("utf-8-sig")
    assert text.startswith("# spending-by-category\r\nmaand;") and "# spending-by-merchant\r\nmaand;" in text
    assert "Café De Hoek" in text


def test_settlement_commands(database_url, tmp_path):  # type: ignore[no-untyped-def]
    config = _config(tmp_path, database_url)
    runner = CliRunner()
    created = runner.invoke(cli, ["--config", config, "settlement", "create", "--period", "2020-01",
                                  "--output", str(tmp_path / "out")])
    assert created.exit_code == 0, created.output
    assert (tmp_path / "out" / "settlement-2020-01.csv").exists()
    listed = runner.invoke(cli, ["--config", config, "settlement", "list"])
    assert "2020-01" in listed.output
    shown = runner.invoke(cli, ["--config", config, "settlement", "show", "2020-01"])
    assert shown.exit_code == 0 and "total payable € 0,00" in shown.output
    unfinished = runner.invoke(cli, ["--config", config, "settlement", "create", "--period", "2999-01"])
    assert unfinished.exit_code != 0 and "not over yet" in unfinished.output


def test_settlement_says_how_to_pay_a_merchant_without_an_iban(capsys):  # type: ignore[no-untyped-def]
    from adapter.cli.settlement import _print_lines

    batch = settlement.SettlementBatch(total_payable_cents=0)
    line = settlement.SettlementLine(merchant_id=7, merchant_name="Sportclub", iban=None, net_cents=1_000,
                                     status=settlement.NO_IBAN)
    _print_lines(settlement.BatchResult(batch=batch, lines=[line], created=True))
    printed = capsys.readouterr().out
    assert "merchant(s) 7 could not be paid" in printed and "merchants set-iban ID IBAN" in printed


def test_settlement_create_records_who_made_the_batch(database_url, tmp_path):  # type: ignore[no-untyped-def]
    """A payment batch is the step that sends money: the audit trail names the operating-system user who made
    it (as `merchants` commands do), not one shared name for every operator."""
    import getpass

    from adapter import settlement

    result = CliRunner().invoke(cli, ["--config", _config(tmp_path, database_url), "settlement", "create",
                                      "--period", "2020-02", "--output", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    db = Database(database_url)
    try:
        with db.read() as session:
            batch = session.execute(select(settlement.SettlementBatch)).scalar_one()
            actors = session.execute(select(AuditEntry.actor).where(
                AuditEntry.action == "settlement.created")).scalars().all()
    finally:
        db.dispose()
    assert batch.created_by == f"operator:{getpass.getuser()}" and actors == [batch.created_by]


def test_settlement_files_that_cannot_be_written_say_the_batch_is_stored_and_how_to_get_its_files(  # type: ignore[no-untyped-def]
        database_url,
        tmp_path):
    """The batch is stored before its files are written: a folder that cannot be written must not end in a
    traceback, which reads as if nothing was made. The operator is told the batch exists and how to get its files."""
    config = _config(tmp_path, database_url)
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("")
    runner = CliRunner()
    failed = runner.invoke(cli, ["--config", config, "settlement", "create", "--period", "2020-03",
                                 "--output", str(not_a_folder / "out")])
    assert failed.exit_code == 1 and not isinstance(failed.exception, OSError), failed.output
    assert "batch 1 for 2020-03 is stored, but its files could not be written" in failed.output
    assert "--output" in failed.output

    again = runner.invoke(cli, ["--config", config, "settlement", "create", "--period", "2020-03",
                                "--output", str(tmp_path / "out")])
    assert again.exit_code == 0 and "batch 1 for 2020-03 already existed" in again.output
    assert (tmp_path / "out" / "settlement-2020-03.csv").exists()
