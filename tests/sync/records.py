"""Generated canonical records for sync tests: deterministic, test BSNs only."""

from __future__ import annotations

import dataclasses
from datetime import date

from adapter.maybe_seen import MaybeSeen
from adapter.records import CardholderRecord, PassStatus, RejectedRecord
from adapter.rules import BudgetRules, rules_from_mapping
from adapter.settings import SyncSettings

# The BSNs published for the BRP test environments; never real people.
TEST_BSNS = ("999993653", "999993847", "999992077", "999993483", "999990482", "000009921", "999995017",
             "999990408", "999994669", "999992806", "999993926")
TODAY = date(2026, 11, 30)
VALIDITY = (date(2026, 1, 1), date(2027, 7, 31))


def household_records(households: int = 1000, *, start: int = 0) -> list[CardholderRecord]:
    """One parent and one or two children per household, one pass each.

    A BSN identifies one person, and there are only eleven test BSNs: the first eleven cardholders of a
    ``start=0`` batch carry one each, the others none (as in exports that leave the column empty).
    """
    records = []
    for number in range(start, start + households):
        members = [("P", date(1980 + number % 15, 1 + number % 12, 1 + number % 28), False)]
        members.append(("K1", date(2010 + number % 12, 1 + (number * 7) % 12, 1 + number % 28), True))
        if number % 2:
            members.append(("K2", date(2014 + number % 8, 1 + (number * 5) % 12, 1 + (number * 3) % 28), True))
        for index, (member, birth_date, is_child) in enumerate(members):
            records.append(CardholderRecord(
                source_key=f"line {len(records) + 2}", household_id=f"H{number:06d}",
                cardholder_id=f"H{number:06d}-{member}", pass_number=f"64{number:08d}{index:02d}",
                bsn=_bsn_for(start, len(records)), first_names=f"Kind{index}",
                surname="Jansen", birth_date=birth_date, valid_from=VALIDITY[0], valid_until=VALIDITY[1],
                is_child=is_child))
    return records


def _bsn_for(start: int, position: int) -> str | None:
    return TEST_BSNS[position] if start == 0 and position < len(TEST_BSNS) else None


def with_changes(records: list[CardholderRecord], **changes: object) -> list[CardholderRecord]:
    return [dataclasses.replace(record, **changes) for record in records]


def rejected(count: int) -> list[RejectedRecord]:
    return [RejectedRecord(f"line {9000 + n}", ("bsn: fails the BSN 11-proof",)) for n in range(count)]


def blocked(record: CardholderRecord) -> CardholderRecord:
    return dataclasses.replace(record, pass_status=PassStatus.BLOCKED)


SIMPLE_RULES: BudgetRules = rules_from_mapping({
    "expiry_grace_days": 0,
    "rules": [
        {"code": "school-primary", "name": "Schoolspullen basisschool", "amount_cents": 12500, "category": "school",
         "min_age": 4, "max_age": 11, "period": "school_year"},
        {"code": "school-secondary", "name": "Schoolspullen VO", "amount_cents": 27500, "category": "school",
         "min_age": 12, "max_age": 17, "period": "school_year"},
        {"code": "clothing", "name": "Kleding", "amount_cents": 15000, "category": "clothing",
         "min_age": 0, "max_age": 17, "period": "calendar_year"},
    ],
})

SYNC_SETTINGS = SyncSettings()


class EveryLineWaits(MaybeSeen):
    """A planner filter that says "maybe" to every key: no line is judged while reading, every line waits
    (``adapter.waiting_lines``), which is judging in file order against exact tables."""

    def seen_before(self, key: object, kind: int = 0) -> bool:
        return True
