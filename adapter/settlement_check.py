"""`settlement verify`: the stored batches against what they paid and against the audit trail.

A batch's files are made again from its stored rows (``settlement create`` returns the stored batch), so a line or
an item changed in the database afterwards changes what the files say was paid, unnoticed. This checks, for
every batch, that each item is the amount of its redemption (or minus its reversal) of the line's own shop, made
before the month ended; that each line adds up to its items; that a line without items was rightly left unpaid;
and that the batch's total is its paid lines' and the one the audit trail recorded when it was made (the trail
is hash-chained: ``audit verify`` tells whether it was changed itself).
"""

from __future__ import annotations

import json
from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from adapter.audit import AuditEntry
from adapter.csvexport import euros_text
from adapter.models import Redemption, Reversal
from adapter.periods import parse_month
from adapter.settlement import NOTHING_TO_PAY, PAYABLE, SettlementBatch, SettlementItem, SettlementLine


def problems(session: Session) -> list[str]:
    """Every disagreement found, one sentence each, batch by batch; none when every batch holds together."""
    return checked(session)[1]


def checked(session: Session) -> tuple[int, list[str]]:
    """How many batches were checked, and ``problems``: both from the same reading."""
    found: list[str] = []
    created = _created_in_audit(session)
    batches = session.execute(select(SettlementBatch).order_by(SettlementBatch.id)).scalars().all()
    for batch in batches:
        found.extend(f"batch {batch.id} ({batch.period}): {problem}" for problem in _batch_problems(session, batch))
        recorded = created.get(batch.id)
        if recorded is None:
            found.append(f"batch {batch.id} ({batch.period}): the audit trail has no settlement.created for it")
        elif (recorded.get("total_payable_cents"), recorded.get("message_id"), recorded.get("period")) != (
                batch.total_payable_cents, batch.message_id, batch.period):
            found.append(f"batch {batch.id} ({batch.period}): the audit trail recorded a total of "
                         f"{_euros(recorded.get('total_payable_cents'))} and message {recorded.get('message_id')} "
                         f"for {recorded.get('period')}; the batch says {_euros(batch.total_payable_cents)} and "
                         f"{batch.message_id}")
    return len(batches), found


def _batch_problems(session: Session, batch: SettlementBatch) -> list[str]:
    found: list[str] = []
    end_utc = parse_month(batch.period).end_utc
    lines = {line.id: line for line in batch.lines}
    paid_by_line: dict[int, list[tuple]] = defaultdict(list)  # type: ignore[type-arg]
    reversed_redemption = aliased(Redemption)
    for item, redemption, reversal, reversal_of in session.execute(
        select(SettlementItem, Redemption, Reversal, reversed_redemption)
        .outerjoin(Redemption, Redemption.id == SettlementItem.redemption_id)
        .outerjoin(Reversal, Reversal.id == SettlementItem.reversal_id)
        .outerjoin(reversed_redemption, reversed_redemption.id == Reversal.redemption_id)
        .where(SettlementItem.batch_id == batch.id).order_by(SettlementItem.id)
    ):
        line = lines.get(item.line_id)
        if line is None:
            found.append(f"item {item.id} belongs to a line of another batch")
            continue
        paid_by_line[line.id].append((item, redemption, reversal))
        if redemption is not None:
            what, shop, made, amount = f"redemption {redemption.id}", redemption.merchant_id, redemption.created_at, \
                redemption.amount_cents
        elif reversal is not None:
            what, shop, made, amount = f"reversal {reversal.id}", reversal_of.merchant_id, reversal.created_at, \
                -reversal.amount_cents
        else:
            found.append(f"item {item.id} pays neither a redemption nor a reversal")
            continue
        if item.amount_cents != amount:
            found.append(f"item {item.id} pays {_euros(item.amount_cents)} for {what}, which was {_euros(amount)}")
        if shop != line.merchant_id:
            found.append(f"item {item.id} pays {what} of merchant {shop} to merchant {line.merchant_id}")
        if made >= end_utc:
            found.append(f"item {item.id} pays {what}, made after {batch.period} ended")
    payable_total = 0
    for line in batch.lines:
        found.extend(f"merchant {line.merchant_id}: {problem}" for problem in _line_problems(line, paid_by_line[line.id]))
        if line.status == PAYABLE:
            payable_total += line.net_cents
    if payable_total != batch.total_payable_cents:
        found.append(f"its total is {_euros(batch.total_payable_cents)}, its payable lines add up to "
                     f"{_euros(payable_total)}")
    return found


def _line_problems(line: SettlementLine, paid: list[tuple]) -> list[str]:  # type: ignore[type-arg]
    found: list[str] = []
    if line.net_cents != line.redeemed_cents - line.reversed_cents:
        found.append(f"its net {_euros(line.net_cents)} is not its redeemed {_euros(line.redeemed_cents)} less its "
                     f"reversed {_euros(line.reversed_cents)}")
    if line.status != PAYABLE:
        if paid:
            found.append(f"the line was not paid ({line.status}), yet {len(paid)} item(s) are paid under it")
        if (line.status == NOTHING_TO_PAY) != (line.net_cents <= 0):
            found.append(f"the line is {line.status} with a net of {_euros(line.net_cents)}")
        return found
    redeemed = [item.amount_cents for item, redemption, _ in paid if redemption is not None]
    reversed_ = [-item.amount_cents for item, _, reversal in paid if reversal is not None]
    if (len(redeemed), sum(redeemed), sum(reversed_)) != (line.redemptions, line.redeemed_cents, line.reversed_cents):
        found.append(f"the line says {line.redemptions} redemption(s) of {_euros(line.redeemed_cents)} and "
                     f"{_euros(line.reversed_cents)} reversed; its items are {len(redeemed)} of "
                     f"{_euros(sum(redeemed))} and {_euros(sum(reversed_))} reversed")
    return found


def _created_in_audit(session: Session) -> dict[int, dict]:  # type: ignore[type-arg]
    """What the audit trail recorded of each batch when it was made, by batch id."""
    recorded: dict[int, dict] = {}  # type: ignore[type-arg]
    for object_ref, details in session.execute(
            select(AuditEntry.object_ref, AuditEntry.details_json).where(AuditEntry.action == "settlement.created")):
        batch_id = object_ref.removeprefix("settlement:")
        if batch_id.isdigit():
            recorded[int(batch_id)] = json.loads(details)
    return recorded


def _euros(cents: object) -> str:
    return euros_text(cents, symbol=True) if isinstance(cents, int) else repr(cents)
