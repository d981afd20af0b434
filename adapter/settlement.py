"""Monthly settlement: the municipality pays each shop what it redeemed, once.

A batch for month M takes every redemption and reversal made before the end of
M that no earlier batch paid, nets them per merchant, and links each one to the
batch (unique per redemption and per reversal, so nothing is paid twice, even
by two operators at once). A reversal made after its redemption was paid is
deducted in the next batch. A merchant that cannot be paid this time (no or an
invalid IBAN, or a net amount of zero or less) is listed with the reason and its
items stay unlinked, so they are carried into the next batch, never dropped.

A batch is stored whole (lines, message id, creation time, execution date), so
creating it again returns the stored batch and writes byte-identical files.
"""

from __future__ import annotations

import re
import secrets
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

from sqlalchemy import BigInteger, Date, ForeignKey, Integer, String, UniqueConstraint, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from adapter import audit
from adapter.csvexport import euros_text, to_csv_bytes
from adapter.db import Database
from adapter.models import Base, BigId, Merchant, Redemption, Reversal, UtcDateTime, utcnow
from adapter.periods import LOCAL_ZONE, local_day, parse_month
from adapter.settings import SettlementSettings

PAYABLE = "payable"
NO_IBAN = "no_iban"
INVALID_IBAN = "invalid_iban"
NOTHING_TO_PAY = "nothing_to_pay"
LINE_STATUS_TEXT = {
    PAYABLE: "wordt betaald",
    NO_IBAN: "niet betaalbaar: geen IBAN bekend (wordt meegenomen naar de volgende batch)",
    INVALID_IBAN: "niet betaalbaar: IBAN ongeldig of buiten SEPA (wordt meegenomen naar de volgende batch)",
    NOTHING_TO_PAY: "niets te betalen: terugboekingen >= bestedingen (saldo gaat mee naar de volgende batch)",
}


# The EPC's Latin character set for SEPA: what every bank must accept in a name or a remittance text. Outside it
# a bank may replace characters or refuse the whole file. sepaxml only transliterates (é -> e) and keeps & < > "
# and the like, which XML escapes but the EPC set does not hold.
_OUTSIDE_SEPA_SET = re.compile(r"[^A-Za-z0-9/\-?:().,'+ ]")


class SettlementError(Exception):
    """A settlement that cannot be made as asked; the message says why and what to do."""


class SettlementBatch(Base):
    __tablename__ = "settlement_batches"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    period: Mapped[str] = mapped_column(String(7), unique=True)  # YYYY-MM
    message_id: Mapped[str] = mapped_column(String(35), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    execution_date: Mapped[date] = mapped_column(Date)
    created_by: Mapped[str] = mapped_column(String(128))
    debtor_name: Mapped[str] = mapped_column(String(70))
    debtor_iban: Mapped[str] = mapped_column(String(34))
    debtor_bic: Mapped[str | None] = mapped_column(String(11))
    total_payable_cents: Mapped[int] = mapped_column(BigInteger)

    lines: Mapped[list[SettlementLine]] = relationship(order_by="SettlementLine.merchant_id")


class SettlementLine(Base):
    """What one merchant gets (or why it gets nothing) in one batch, as it was when the batch was made."""

    __tablename__ = "settlement_lines"
    __table_args__ = (UniqueConstraint("batch_id", "merchant_id", name="uq_settlement_lines_batch_merchant"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("settlement_batches.id"), index=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"))
    merchant_name: Mapped[str] = mapped_column(String(200))
    iban: Mapped[str | None] = mapped_column(String(34))
    redemptions: Mapped[int] = mapped_column(Integer)
    redeemed_cents: Mapped[int] = mapped_column(BigInteger)
    reversed_cents: Mapped[int] = mapped_column(BigInteger)
    net_cents: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(20))
    end_to_end_id: Mapped[str] = mapped_column(String(35))


class SettlementItem(Base):
    """One redemption (+) or reversal (-) paid by a batch. Unique: nothing is paid twice."""

    __tablename__ = "settlement_items"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("settlement_batches.id"), index=True)
    line_id: Mapped[int] = mapped_column(ForeignKey("settlement_lines.id"), index=True)
    redemption_id: Mapped[str | None] = mapped_column(ForeignKey("redemptions.id"), unique=True)
    reversal_id: Mapped[str | None] = mapped_column(ForeignKey("reversals.id"), unique=True)
    amount_cents: Mapped[int] = mapped_column(BigInteger)


@dataclass(frozen=True)
class BatchResult:
    batch: SettlementBatch
    lines: list[SettlementLine]
    created: bool  # False: the stored batch for this period was returned


# ---------------------------------------------------------------- create

def create_batch(db: Database, settings: SettlementSettings, period_text: str, actor: str,
                 now: datetime | None = None) -> BatchResult:
    """The batch for a finished month: made once, returned as stored on every later call."""
    period = parse_month(period_text)
    now = now or utcnow()
    existing = find_batch(db, period.label)
    if existing is not None:
        return existing
    if now < period.end_utc:
        raise SettlementError(f"{period.label} is not over yet; settle a month after its last day")
    if not (settings.debtor_name and settings.debtor_iban):
        raise SettlementError("settlement.debtor_name and settlement.debtor_iban are not set in the configuration; "
                              "add the municipality's own account to the settlement: block")
    batches_before = _batch_count(db)
    try:
        with db.write() as session:
            later = session.execute(select(SettlementBatch.period).where(SettlementBatch.period > period.label)
                                    .order_by(SettlementBatch.period).limit(1)).scalar_one_or_none()
            if later is not None:
                raise SettlementError(f"a batch for the later month {later} exists; its batch already took every "
                                      f"unpaid item up to then, so {period.label} cannot be settled separately")
            _build_batch(session, settings, period.label, period.end_utc, actor, now)
    except IntegrityError:
        # Another operator made this batch (or paid these items) at the same moment: return theirs.
        existing = find_batch(db, period.label)
        if existing is None:
            if _batch_count(db) == batches_before:
                raise  # no batch came meanwhile: not that race, and not for this message to hide
            # Theirs was another month's, made at the same moment, and it took items this one would have: nothing
            # of this one was written. The later-month rule above decides, once theirs is committed, whether
            # this month can still be settled on its own.
            raise SettlementError(f"another settlement batch was made at the same moment and took some of the "
                                  f"items of {period.label}; nothing was made for {period.label}. Run it again: it "
                                  "then settles what is left, or says why it cannot") from None
        return existing
    stored = find_batch(db, period.label)
    assert stored is not None
    return BatchResult(stored.batch, stored.lines, created=True)


def _batch_count(db: Database) -> int:
    with db.read() as session:
        return session.execute(select(func.count()).select_from(SettlementBatch)).scalar_one()


def _build_batch(session: Session, settings: SettlementSettings, period: str, end_utc: datetime, actor: str,
                 now: datetime) -> SettlementBatch:
    redemptions = session.execute(
        select(Redemption.id, Redemption.merchant_id, Redemption.amount_cents)
        .where(Redemption.created_at < end_utc,
               Redemption.id.not_in(select(SettlementItem.redemption_id).where(
                   SettlementItem.redemption_id.is_not(None))))
        .order_by(Redemption.created_at, Redemption.id)
    ).all()
    reversals = session.execute(
        select(Reversal.id, Redemption.merchant_id, Reversal.amount_cents)
        .join(Redemption, Redemption.id == Reversal.redemption_id)
        .where(Reversal.created_at < end_utc,
               Reversal.id.not_in(select(SettlementItem.reversal_id).where(SettlementItem.reversal_id.is_not(None))))
        .order_by(Reversal.created_at, Reversal.id)
    ).all()
    per_merchant: dict[int, dict[str, list]] = defaultdict(lambda: {"redemptions": [], "reversals": []})
    for redemption_id, merchant_id, amount_cents in redemptions:
        per_merchant[merchant_id]["redemptions"].append((redemption_id, amount_cents))
    for reversal_id, merchant_id, amount_cents in reversals:
        per_merchant[merchant_id]["reversals"].append((reversal_id, amount_cents))

    batch = SettlementBatch(
        period=period, message_id=f"SPA-{period}-{secrets.token_hex(6).upper()}", created_at=now.replace(microsecond=0),
        execution_date=local_day(now) + timedelta(days=settings.execution_delay_days), created_by=actor,
        debtor_name=settings.debtor_name, debtor_iban=settings.debtor_iban, debtor_bic=settings.debtor_bic,
        total_payable_cents=0)
    session.add(batch)
    session.flush()
    total = 0
    for merchant_id in sorted(per_merchant):
        items = per_merchant[merchant_id]
        merchant = session.get(Merchant, merchant_id)
        assert merchant is not None  # a redemption's merchant is never deleted (foreign key)
        redeemed = sum(amount for _, amount in items["redemptions"])
        reversed_ = sum(amount for _, amount in items["reversals"])
        net = redeemed - reversed_
        iban, status = _payee_iban(merchant.iban)
        if net <= 0:
            # Before the IBAN: a shop that owes the municipality (its reversals outweigh its sales) is not one to ask
            # for an account to be paid on, which is what "no IBAN" tells the operator to do.
            status = NOTHING_TO_PAY
        line = SettlementLine(batch_id=batch.id, merchant_id=merchant_id, merchant_name=merchant.name, iban=iban,
                              redemptions=len(items["redemptions"]), redeemed_cents=redeemed,
                              reversed_cents=reversed_, net_cents=net, status=status,
                              end_to_end_id=f"SPA-{period}-M{merchant_id}")
        session.add(line)
        session.flush()
        if status != PAYABLE:
            continue  # its items stay unpaid and come back in the next batch
        total += net
        session.add_all([SettlementItem(batch_id=batch.id, line_id=line.id, redemption_id=redemption_id,
                                        amount_cents=amount) for redemption_id, amount in items["redemptions"]])
        session.add_all([SettlementItem(batch_id=batch.id, line_id=line.id, reversal_id=reversal_id,
                                        amount_cents=-amount) for reversal_id, amount in items["reversals"]])
    batch.total_payable_cents = total
    session.flush()
    audit.record(session, actor, "settlement.created", f"settlement:{batch.id}", period=period,
                 total_payable_cents=total, message_id=batch.message_id)
    return batch


def _payee_iban(raw_iban: str | None) -> tuple[str | None, str]:
    from schwifty import IBAN

    if not raw_iban or not raw_iban.strip():
        return None, NO_IBAN
    try:
        iban = IBAN(raw_iban)
    except ValueError:
        return raw_iban, INVALID_IBAN
    # Valid, but of a country a SEPA credit transfer cannot pay: in the file the bank would refuse it.
    return (str(iban.compact), PAYABLE) if iban.in_sepa_zone else (raw_iban, INVALID_IBAN)


# ---------------------------------------------------------------- read

def find_batch(db: Database, period_or_id: str) -> BatchResult | None:
    with db.read() as session:
        if period_or_id.isdigit():
            batch = session.get(SettlementBatch, int(period_or_id))
        else:
            batch = session.execute(select(SettlementBatch).where(SettlementBatch.period == period_or_id)
                                    ).scalar_one_or_none()
        if batch is None:
            return None
        lines = list(session.execute(select(SettlementLine).where(SettlementLine.batch_id == batch.id)
                                     .order_by(SettlementLine.merchant_id)).scalars())
        return BatchResult(batch, lines, created=False)


def list_batches(db: Database) -> list[SettlementBatch]:
    with db.read() as session:
        return list(session.execute(select(SettlementBatch).order_by(SettlementBatch.period)).scalars())


# ---------------------------------------------------------------- files

def csv_bytes(result: BatchResult) -> bytes:
    rows = [[line.merchant_id, line.merchant_name, line.iban or "", line.redemptions, euros_text(line.redeemed_cents),
             euros_text(line.reversed_cents), euros_text(line.net_cents),
             euros_text(line.net_cents if line.status == PAYABLE else 0), LINE_STATUS_TEXT[line.status]]
            for line in result.lines]
    rows.append(["", "totaal", "", sum(line.redemptions for line in result.lines),
                 euros_text(sum(line.redeemed_cents for line in result.lines)),
                 euros_text(sum(line.reversed_cents for line in result.lines)),
                 euros_text(sum(line.net_cents for line in result.lines)),
                 euros_text(result.batch.total_payable_cents), ""])
    return to_csv_bytes(["aanbieder-id", "aanbieder", "iban", "aantal", "besteed", "teruggeboekt", "netto",
                         "te betalen", "status"], rows)


def sepa_bytes(result: BatchResult) -> bytes | None:
    """pain.001.001.03, validated against its XSD by sepaxml; None when nobody is payable."""
    payable = [line for line in result.lines if line.status == PAYABLE]
    if not payable:
        return None
    batch = result.batch
    config = {"name": sepa_text(batch.debtor_name, 70, "Gemeente"), "IBAN": batch.debtor_iban, "batch": True, "currency": "EUR"}
    if batch.debtor_bic:
        config["BIC"] = batch.debtor_bic
    transfer = _StoredIdTransfer(config, payment_info_id=f"{batch.message_id}-1", schema="pain.001.001.03")
    header = transfer._xml.find("CstmrCdtTrfInitn/GrpHdr")
    # sepaxml stamps a random id and the current time; the stored ones make a rerun byte-identical.
    header.find("MsgId").text = batch.message_id
    header.find("CreDtTm").text = batch.created_at.astimezone(LOCAL_ZONE).strftime("%Y-%m-%dT%H:%M:%S")
    for line in payable:
        transfer.add_payment({"name": sepa_text(line.merchant_name, 70, f"Aanbieder {line.merchant_id}"),
                              "IBAN": line.iban, "amount": line.net_cents,
                              "execution_date": batch.execution_date, "endtoend_id": line.end_to_end_id,
                              "description": sepa_text(f"Stadspas kindpakket {batch.period} aanbieder "
                                                       f"{line.merchant_id}", 140, "Stadspas kindpakket")})
    return transfer.export(validate=True)


def sepa_text(text: str, max_length: int, fallback: str) -> str:
    """Text within the EPC set: letters transliterated, & as + (the EPC's conversion), anything else a space.
    Never empty: a name of emoji alone would make the file fail its schema after its batch was stored."""
    from text_unidecode import unidecode  # sepaxml's own dependency, which it uses for the same purpose

    within = _OUTSIDE_SEPA_SET.sub(" ", unidecode(text).replace("&", "+"))
    return " ".join(within.split())[:max_length].strip() or fallback


class _StoredIdTransfer:
    """sepaxml's SepaTransfer with the payment-information id taken from the stored batch."""

    def __new__(cls, config: dict, *, payment_info_id: str, schema: str):  # type: ignore[no-untyped-def]
        import xml.etree.ElementTree as ET  # what sepaxml builds its document with

        from sepaxml import SepaTransfer

        class Transfer(SepaTransfer):
            def _finalize_batch(self) -> None:
                super()._finalize_batch()
                for node in self._xml.iter("PmtInfId"):
                    node.text = payment_info_id
                # Without the debtor's BIC sepaxml leaves its bank an empty FinInstnId, which the schema takes and
                # some banks' checks refuse: the EPC's guidelines name it Othr/Id NOTPROVIDED.
                for agent in self._xml.iter("DbtrAgt"):
                    for institution in agent.iter("FinInstnId"):
                        if len(institution) == 0:
                            ET.SubElement(ET.SubElement(institution, "Othr"), "Id").text = "NOTPROVIDED"

        return Transfer(config, schema=schema)


def write_files(result: BatchResult, output_dir: Path) -> list[Path]:
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    csv_path = output_dir / f"settlement-{result.batch.period}.csv"
    csv_path.write_bytes(csv_bytes(result))
    written.append(csv_path)
    xml = sepa_bytes(result)
    if xml is not None:
        xml_path = output_dir / f"settlement-{result.batch.period}.xml"
        xml_path.write_bytes(xml)
        written.append(xml_path)
    return written
