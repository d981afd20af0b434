"""Many cardholders quickly, with every personal column filled (fixture data only)."""

from __future__ import annotations

import itertools
from datetime import date

from adapter.crypto import Vault
from adapter.db import Database
from adapter.models import Cardholder, Household
from adapter.personal import PersonalFields, seal
from tests.fixture_personal_data import FIXTURE_BIRTH_DATES, FIXTURE_SURNAMES, TEST_BSNS

_households = itertools.count(1)


def person(index: int) -> dict[str, str]:
    return {"bsn": TEST_BSNS[index % len(TEST_BSNS)], "first_names": "Sanne Maria", "initials": "S.M.",
            "surname_prefix": "van", "surname": FIXTURE_SURNAMES[index % len(FIXTURE_SURNAMES)],
            "birth_date": FIXTURE_BIRTH_DATES[index % len(FIXTURE_BIRTH_DATES)]}


def personal_fields(fields: dict[str, str]) -> PersonalFields:
    return PersonalFields(**{**fields, "birth_date": date.fromisoformat(fields["birth_date"])})


def add_cardholders(db: Database, vault: Vault, count: int) -> list[int]:
    """``count`` cardholders in one household; returns their ids in order."""
    with db.write() as session:
        household = Household(source="bulk", source_key=f"H{next(_households)}")
        session.add(household)
        session.flush()
        holders = []
        for index in range(count):
            fields = person(index)
            holders.append(Cardholder(
                household_id=household.id, source="bulk", source_key=f"{household.source_key}-{index}",
                bsn_index=vault.blind_index(fields["bsn"]), is_child=True,
                personal_encrypted=seal(vault, personal_fields(fields))))
        session.add_all(holders)
        session.flush()
        return [holder.id for holder in holders]
