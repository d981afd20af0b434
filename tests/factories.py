"""Small builders for test data. Test BSNs only."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import date

from adapter import ledger, merchants
from adapter.crypto import Vault
from adapter.db import Database
from adapter.models import Budget, Cardholder, Household, Pass, PassState
from adapter.personal import PersonalFields, seal
from tests.fixture_personal_data import FIXTURE_BIRTH_DATES, FIXTURE_SURNAMES, TEST_BSNS, issue_pass_number

_sequence = itertools.count(1)


@dataclass(frozen=True)
class ChildWithBudget:
    cardholder_id: int
    pass_id: int
    pass_number: str
    budget_id: int


def child_with_budget(db: Database, vault: Vault, *, amount_cents: int = 10_000, category: str = "school",
                      bsn: str = TEST_BSNS[0], pass_state: PassState = PassState.ACTIVE,
                      period: tuple[date, date] = (date(2026, 1, 1), date(2026, 12, 31))) -> ChildWithBudget:
    number = next(_sequence)
    with db.write() as session:
        household = Household(source="test", source_key=f"H{number}")
        session.add(household)
        session.flush()
        holder = Cardholder(household_id=household.id, source="test", source_key=f"C{number}",
                            personal_encrypted=seal(vault, PersonalFields(
                                bsn=bsn, first_names="Sanne", surname=FIXTURE_SURNAMES[0],
                                birth_date=date.fromisoformat(FIXTURE_BIRTH_DATES[0]))),
                            bsn_index=vault.blind_index(bsn), is_child=True)
        session.add(holder)
        session.flush()
        pass_number = issue_pass_number(number)
        card = Pass(cardholder_id=holder.id, pass_number=pass_number, status=pass_state,
                    valid_from=period[0], valid_until=period[1])
        budget = Budget(cardholder_id=holder.id, rule_code="school", rule_name="Schoolspullen", category=category,
                        period_key=str(period[0].year), period_start=period[0], period_end=period[1])
        session.add_all([card, budget])
        session.flush()
        if amount_cents:
            ledger.grant(session, budget.id, amount_cents, actor="test")
        return ChildWithBudget(holder.id, card.id, pass_number, budget.id)


def merchant(db: Database, name: str = "Boekhandel", categories: tuple[str, ...] = ("school",)) -> merchants.IssuedKey:
    with db.write() as session:
        return merchants.add_merchant(session, name, list(categories), iban="NL91ABNA0417164300")
