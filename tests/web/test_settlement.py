"""Monthly settlement: paid once, reruns identical, late reversals deducted next month, valid SEPA."""

from __future__ import annotations

import os
from datetime import date, timedelta

import pytest
import sepaxml
from lxml import etree
from sqlalchemy import select, text

from adapter import audit, ledger, settlement
from adapter.audit import AuditEntry
from adapter.db import Database
from adapter.models import Merchant, utcnow
from adapter.periods import local_day, local_month, parse_month
from adapter.settings import SettlementSettings
from tests import factories

SETTINGS = SettlementSettings(debtor_name="Gemeente Voorbeeldstad", debtor_iban="NL02ABNA0123456789",
                              debtor_bic="ABNANL2A")
_XSD = os.path.join(os.path.dirname(sepaxml.__file__), "schemas", "pain.001.001.03.xsd")


def _months():
    this_month = local_month(utcnow())
    next_month = local_month(parse_month(this_month).end_utc + timedelta(days=1))
    return this_month, next_month


def _after(month: str):
    return parse_month(month).end_utc + timedelta(hours=1)


def _spend(db, child, merchant_id, amount_cents):
    outcome = ledger.redeem(db, ledger.RedemptionRequest(merchant_id=merchant_id, budget_id=child.budget_id,
                                                         pass_id=child.pass_id, amount_cents=amount_cents,
                                                         actor="test"))
    assert outcome.succeeded
    return outcome.redemption_id


def _reverse(db, merchant_id, redemption_id, amount_cents):
    outcome = ledger.reverse(db, ledger.ReversalRequest(merchant_id=merchant_id, redemption_id=redemption_id,
                                                        reason="retour", actor="test", amount_cents=amount_cents))
    assert outcome.succeeded


def _world(db, vault):
    year = local_day(utcnow()).year
    child = factories.child_with_budget(db, vault, amount_cents=50_000, period=(date(year - 1, 1, 1),
                                                                                  date(year + 1, 12, 31)))
    paid = factories.merchant(db, "Boekhandel De Pen").merchant_id
    no_iban = factories.merchant(db, "Sportclub Zonder Rekening").merchant_id
    with db.write() as session:
        session.get(Merchant, no_iban).iban = None
    return child, paid, no_iban


def _validate_sepa(xml_bytes: bytes) -> etree._Element:
    schema = etree.XMLSchema(etree.parse(_XSD))
    document = etree.fromstring(xml_bytes)
    schema.assertValid(document)
    return document


def test_batch_pays_net_per_merchant_lists_unpayable_and_reruns_identically(db, vault, tmp_path):
    child, paid, no_iban = _world(db, vault)
    big = _spend(db, child, paid, 3_000)
    small = _spend(db, child, paid, 2_000)
    _spend(db, child, no_iban, 1_000)
    _reverse(db, paid, small, 500)
    this_month, _ = _months()

    first = settlement.create_batch(db, SETTINGS, this_month, "operator:test", now=_after(this_month))
    files_first = settlement.write_files(first, tmp_path / "first")
    again = settlement.create_batch(db, SETTINGS, this_month, "operator:test", now=_after(this_month) + timedelta(days=3))
    files_again = settlement.write_files(again, tmp_path / "again")

    assert first.created and not again.created and again.batch.id == first.batch.id
    assert [path.read_bytes() for path in files_first] == [path.read_bytes() for path in files_again]
    lines = {line.merchant_id: line for line in first.lines}
    assert (lines[paid].net_cents, lines[paid].status) == (4_500, settlement.PAYABLE)
    assert (lines[no_iban].net_cents, lines[no_iban].status) == (1_000, settlement.NO_IBAN)
    with db.read() as session:
        ledger_net = session.execute(text(
            "SELECT -SUM(e.amount_cents) FROM ledger_entries e JOIN redemptions r ON r.id = e.redemption_id "
            "WHERE e.kind IN ('redemption', 'reversal') AND r.merchant_id = :m"), {"m": paid}).scalar_one()
        created = session.execute(select(AuditEntry).where(AuditEntry.action == "settlement.created")).scalars().all()
        assert audit.verify(session) == []
    assert first.batch.total_payable_cents == int(ledger_net) == 4_500
    assert len(created) == 1

    document = _validate_sepa(files_first[1].read_bytes())
    ns = {"p": "urn:iso:std:iso:20022:tech:xsd:pain.001.001.03"}
    assert document.findtext(".//p:GrpHdr/p:CtrlSum", namespaces=ns) == "45.00"
    assert document.findtext(".//p:GrpHdr/p:MsgId", namespaces=ns) == first.batch.message_id
    assert document.findtext(".//p:CdtTrfTxInf/p:CdtrAcct/p:Id/p:IBAN", namespaces=ns) == "NL91ABNA0417164300"
    assert len(document.findall(".//p:CdtTrfTxInf", namespaces=ns)) == 1  # the merchant without IBAN is not paid
    csv_text = files_first[0].read_bytes().decode("utf-8-sig")
    assert "Sportclub Zonder Rekening" in csv_text and "geen IBAN" in csv_text and "45,00" in csv_text
    assert big  # the first redemption is paid in full


def test_reversal_after_settlement_is_deducted_next_month_and_nothing_is_paid_twice(db, vault, tmp_path):
    child, paid, no_iban = _world(db, vault)
    settled = _spend(db, child, paid, 3_000)
    _spend(db, child, no_iban, 1_000)
    this_month, next_month = _months()
    first = settlement.create_batch(db, SETTINGS, this_month, "operator:test", now=_after(this_month))

    _reverse(db, paid, settled, 1_000)  # after its redemption was paid
    _spend(db, child, paid, 2_500)
    with db.write() as session:
        session.get(Merchant, no_iban).iban = "NL20INGB0001234567"
    second = settlement.create_batch(db, SETTINGS, next_month, "operator:test", now=_after(next_month))

    lines = {line.merchant_id: line for line in second.lines}
    assert (lines[paid].redeemed_cents, lines[paid].reversed_cents, lines[paid].net_cents) == (2_500, 1_000, 1_500)
    assert (lines[no_iban].net_cents, lines[no_iban].status) == (1_000, settlement.PAYABLE)  # carried over
    assert first.batch.total_payable_cents + second.batch.total_payable_cents == 3_000 - 1_000 + 2_500 + 1_000
    with db.read() as session:
        paid_twice = session.execute(text(
            "SELECT redemption_id FROM settlement_items WHERE redemption_id IS NOT NULL "
            "GROUP BY redemption_id HAVING COUNT(*) > 1")).all()
        total_items = session.execute(text("SELECT SUM(amount_cents) FROM settlement_items")).scalar_one()
        ledger_total = session.execute(text(
            "SELECT -SUM(amount_cents) FROM ledger_entries WHERE kind IN ('redemption', 'reversal')")).scalar_one()
    assert paid_twice == []
    assert int(total_items) == int(ledger_total)  # every cent the ledger moved is settled exactly once
    _validate_sepa(settlement.sepa_bytes(second))


def test_an_unfinished_month_and_an_earlier_month_after_a_later_one_are_refused(db, vault):
    this_month, next_month = _months()
    with pytest.raises(settlement.SettlementError, match="not over yet"):
        settlement.create_batch(db, SETTINGS, this_month, "operator:test")
    settlement.create_batch(db, SETTINGS, next_month, "operator:test", now=_after(next_month))
    with pytest.raises(settlement.SettlementError, match=next_month):
        settlement.create_batch(db, SETTINGS, this_month, "operator:test", now=_after(next_month))


def test_a_batch_of_another_month_made_at_the_same_moment_is_a_settlement_error_that_says_to_run_again(
        postgres_url, vault, monkeypatch):
    """Two operators, two months: the other's batch commits while this one builds, and takes a redemption this
    one would have; this one's insert then meets settlement_items' unique key. The operator is told to run it
    again, not shown the database's error. An IntegrityError with no batch made meanwhile is not hidden."""
    from datetime import datetime, timezone

    from sqlalchemy import create_engine
    from sqlalchemy.exc import IntegrityError

    db = Database(postgres_url)
    child, paid, _no_iban = _world(db, vault)
    _spend(db, child, paid, 3_000)
    this_month, next_month = _months()
    other = create_engine(postgres_url)

    def taken_meanwhile(*_args, **_kwargs):  # type: ignore[no-untyped-def]
        with other.begin() as connection:  # the other operator's batch commits now
            connection.execute(settlement.SettlementBatch.__table__.insert().values(
                period=next_month, message_id="SPA-OTHER", created_at=datetime.now(timezone.utc),
                execution_date=date.today(), created_by="operator:bob", debtor_name="Gemeente",
                debtor_iban="NL02ABNA0123456789", total_payable_cents=0))
        raise IntegrityError("INSERT INTO settlement_items ...", None, Exception("settlement_items_redemption_id_key"))

    def a_bug(*_args, **_kwargs):  # type: ignore[no-untyped-def]
        raise IntegrityError("INSERT INTO settlement_lines ...", None, Exception("a constraint of our own"))

    try:
        monkeypatch.setattr(settlement, "_build_batch", a_bug)
        with pytest.raises(IntegrityError):
            settlement.create_batch(db, SETTINGS, this_month, "operator:test", now=_after(this_month))
        monkeypatch.setattr(settlement, "_build_batch", taken_meanwhile)
        with pytest.raises(settlement.SettlementError, match=f"nothing was made for {this_month}. Run it again"):
            settlement.create_batch(db, SETTINGS, this_month, "operator:test", now=_after(this_month))
    finally:
        other.dispose()
        db.dispose()


def test_sepa_names_keep_to_the_epc_character_set_and_are_never_empty(db, vault):
    """Outside the EPC's Latin set (a-z A-Z 0-9 / - ? : ( ) . , ' + space) a bank may swap characters or refuse
    the whole file. A name typed with & < " or accents is written within it; a name with nothing left after
    that still gets a name, so the file can be made (the batch is already stored: a file that cannot be written
    would leave the month unpayable)."""
    import re

    year = local_day(utcnow()).year
    child = factories.child_with_budget(db, vault, amount_cents=50_000, period=(date(year - 1, 1, 1),
                                                                                  date(year + 1, 12, 31)))
    odd = factories.merchant(db, 'Sport & Spel <Kids> "Één" – Café').merchant_id
    emoji = factories.merchant(db, "🎈🎈").merchant_id
    _spend(db, child, odd, 1_000)
    _spend(db, child, emoji, 2_000)
    this_month, _ = _months()
    result = settlement.create_batch(db, SETTINGS, this_month, "operator:test", now=_after(this_month))

    document = _validate_sepa(settlement.sepa_bytes(result))
    ns = {"p": "urn:iso:std:iso:20022:tech:xsd:pain.001.001.03"}
    names = [node.text for node in document.findall(".//p:Cdtr/p:Nm", namespaces=ns)]
    texts = names + [node.text for node in document.findall(".//p:Ustrd", namespaces=ns)] + \
        [document.findtext(".//p:Dbtr/p:Nm", namespaces=ns)]
    assert all(re.fullmatch(r"[A-Za-z0-9/\-?:().,'+ ]+", text) for text in texts), texts
    assert names == ["Sport + Spel Kids Een - Cafe", f"Aanbieder {emoji}"]


def test_a_stored_iban_outside_the_sepa_zone_is_not_paid_but_carried(db, vault):
    """A valid IBAN of a country outside SEPA (stored before such IBANs were refused) stays out of the
    SEPA file: the merchant is listed as not payable and its redemptions wait for the next batch."""
    child, paid, no_iban = _world(db, vault)
    _spend(db, child, paid, 1_000)
    _spend(db, child, no_iban, 2_000)
    with db.write() as session:
        session.get(Merchant, no_iban).iban = "BR1800360305000010009795493C1"
    this_month, _ = _months()
    result = settlement.create_batch(db, SETTINGS, this_month, "operator:test", now=_after(this_month))

    lines = {line.merchant_id: line for line in result.lines}
    assert lines[no_iban].status == settlement.INVALID_IBAN and "SEPA" in settlement.LINE_STATUS_TEXT[
        settlement.INVALID_IBAN]
    assert result.batch.total_payable_cents == 1_000
    assert b"BR1800360305000010009795493C1" not in settlement.sepa_bytes(result)


def test_the_municipalitys_own_iban_outside_the_sepa_zone_is_refused_in_the_configuration():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="outside the SEPA zone"):
        SettlementSettings(debtor_name="Gemeente", debtor_iban="BR1800360305000010009795493C1")


def test_without_the_municipalitys_bic_its_bank_is_named_as_not_provided(db, vault):
    """The EPC's guidelines for a credit transfer without the debtor's BIC: Othr/Id NOTPROVIDED, not an empty
    FinInstnId, which some banks' own checks refuse though the schema takes it."""
    child, paid, _no_iban = _world(db, vault)
    _spend(db, child, paid, 1_000)
    this_month, _ = _months()
    without_bic = SettlementSettings(debtor_name="Gemeente Voorbeeldstad", debtor_iban="NL02ABNA0123456789")
    result = settlement.create_batch(db, without_bic, this_month, "operator:test", now=_after(this_month))

    document = _validate_sepa(settlement.sepa_bytes(result))
    ns = {"p": "urn:iso:std:iso:20022:tech:xsd:pain.001.001.03"}
    [agent] = document.findall(".//p:DbtrAgt/p:FinInstnId", namespaces=ns)
    assert agent.findtext("p:Othr/p:Id", namespaces=ns) == "NOTPROVIDED"
    assert agent.find("p:BIC", namespaces=ns) is None


def test_a_merchant_without_an_iban_that_owes_money_is_listed_as_nothing_to_pay_not_as_wanting_an_iban(db, vault,
                                                                                                      capsys):
    """A shop without an IBAN whose reversals outweigh its sales is owed nothing: the batch must not list it as
    unpaid for want of an IBAN, which sends the finance officer to ask the shop for an account to pay it on."""
    from adapter.cli.settlement import _print_lines

    child, paid, no_iban = _world(db, vault)
    _spend(db, child, paid, 1_000)
    refunded = _spend(db, child, no_iban, 2_000)
    _reverse(db, no_iban, refunded, 2_000)
    this_month, _ = _months()
    result = settlement.create_batch(db, SETTINGS, this_month, "operator:test", now=_after(this_month))

    lines = {line.merchant_id: line for line in result.lines}
    assert (lines[no_iban].net_cents, lines[no_iban].status) == (0, settlement.NOTHING_TO_PAY)
    assert "geen IBAN" not in settlement.csv_bytes(result).decode("utf-8-sig")
    _print_lines(result)
    assert "could not be paid for want of a valid IBAN" not in capsys.readouterr().out


def test_settlement_verify_finds_every_row_changed_after_the_batch_was_made(db, vault, tmp_path):
    """The files are made again from the stored rows: a line, an item or a total changed in the database
    afterwards changed what the files say was paid, unnoticed."""
    from click.testing import CliRunner

    from adapter import settlement_check
    from adapter.cli import cli
    from adapter.settlement import SettlementBatch, SettlementItem, SettlementLine
    from tests.conftest import make_settings

    child, paid, no_iban = _world(db, vault)
    _spend(db, child, paid, 3_000)
    small = _spend(db, child, paid, 2_000)
    _spend(db, child, no_iban, 1_000)
    _reverse(db, paid, small, 500)
    this_month, _ = _months()
    batch = settlement.create_batch(db, SETTINGS, this_month, "operator:test", now=_after(this_month)).batch
    config = tmp_path / "adapter.yaml"
    config.write_text(make_settings(tmp_path, db.url).model_dump_json(), encoding="utf-8")

    def verify():  # type: ignore[no-untyped-def]
        with db.read() as session:
            return settlement_check.problems(session)

    assert verify() == []
    with db.write() as session:
        item = session.execute(select(SettlementItem).where(SettlementItem.batch_id == batch.id,
                                                            SettlementItem.redemption_id.is_not(None))
                               .order_by(SettlementItem.id)).scalars().first()
        item.amount_cents += 100
    assert any(f"item {item.id} pays" in problem and "which was" in problem for problem in verify())
    assert any("its items are 2 of" in problem for problem in verify())
    with db.write() as session:
        session.get(SettlementItem, item.id).amount_cents -= 100
        line = session.execute(select(SettlementLine).where(SettlementLine.merchant_id == paid)).scalar_one()
        line.net_cents, line.redeemed_cents = 9_000, 9_500
        session.get(SettlementBatch, batch.id).total_payable_cents = 9_000
    found = verify()
    assert any("its items are 2 of € 50,00" in problem for problem in found), found
    assert any("the audit trail recorded a total of € 45,00" in problem for problem in found), found
    refused = CliRunner().invoke(cli, ["--config", str(config), "settlement", "verify"])
    assert refused.exit_code == 1 and "audit verify" in refused.output
    with db.write() as session:
        line = session.execute(select(SettlementLine).where(SettlementLine.merchant_id == paid)).scalar_one()
        line.net_cents, line.redeemed_cents = 4_500, 5_000
        session.get(SettlementBatch, batch.id).total_payable_cents = 4_500
        unpaid = session.execute(select(SettlementLine).where(SettlementLine.merchant_id == no_iban)).scalar_one()
        unpaid.status = settlement.NOTHING_TO_PAY
    assert verify() == [f"batch {batch.id} ({this_month}): merchant {no_iban}: the line is nothing_to_pay with a net "
                        "of € 10,00"]
    with db.write() as session:
        session.execute(select(SettlementLine).where(SettlementLine.merchant_id == no_iban)).scalar_one().status = \
            settlement.NO_IBAN
    checked = CliRunner().invoke(cli, ["--config", str(config), "settlement", "verify"])
    assert checked.exit_code == 0 and "1 batch(es) checked" in checked.output
