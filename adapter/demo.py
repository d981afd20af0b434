"""Demo data for `make run`: made-up households, test BSNs only, and a merchant to try the API with.

Running it again reuses what is there: the same passes, the same merchant key.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path

from sqlalchemy import select

from adapter import audit, ledger, merchants
from adapter.crypto import Vault
from adapter.db import Database
from adapter.models import Budget, Cardholder, Household, Merchant, Pass, PassState

DEMO_SOURCE = "demo"
DEMO_FILE = "demo.json"
DEMO_ACTOR = "demo"

# BSNs published for the BRP test environments (all 11-proof); never real people.
_DEMO_PEOPLE = [
    # household, cardholder, bsn, first name, surname, birth date, pass number, state
    ("H001", "P001", "999993653", "Fatima", "El Amrani", date(1984, 3, 2), "6400000000000011", PassState.ACTIVE),
    ("H001", "P002", "999993847", "Yasmina", "El Amrani", date(2014, 9, 14), "6400000000000029", PassState.ACTIVE),
    ("H001", "P003", "999992077", "Noah", "El Amrani", date(2017, 1, 30), "6400000000000037", PassState.ACTIVE),
    ("H002", "P004", "999993483", "Joke", "de Vries", date(1990, 6, 21), "6400000000000045", PassState.ACTIVE),
    ("H002", "P005", "999990482", "Daan", "de Vries", date(2012, 11, 5), "6400000000000052", PassState.ACTIVE),
    ("H002", "P006", "000009921", "Eva", "de Vries", date(2019, 4, 18), "6400000000000060", PassState.BLOCKED),
]
_DEMO_BUDGETS = [("demo-school", "Schoolspullen", "school", 15_000), ("demo-sport", "Sport en cultuur", "sport", 25_000)]


@dataclass(frozen=True)
class DemoInfo:
    base_url: str
    merchant_api_key: str
    pass_numbers: list[str]
    blocked_pass_number: str


def load_demo(db: Database, vault: Vault, data_dir: Path, base_url: str, today: date) -> DemoInfo:
    info_path = data_dir / DEMO_FILE
    with db.write() as session:
        created = 0
        for household_key, holder_key, bsn, first_name, surname, birth_date, pass_number, state in _DEMO_PEOPLE:
            household = _get_or_add(session, Household, source=DEMO_SOURCE, source_key=household_key)
            holder = session.execute(select(Cardholder).where(
                Cardholder.source == DEMO_SOURCE, Cardholder.source_key == holder_key)).scalar_one_or_none()
            if holder is None:
                holder = Cardholder(
                    household_id=household.id, source=DEMO_SOURCE, source_key=holder_key,
                    bsn_encrypted=vault.encrypt(bsn), bsn_index=vault.blind_index(bsn),
                    first_names_encrypted=vault.encrypt(first_name), surname_encrypted=vault.encrypt(surname),
                    birth_date_encrypted=vault.encrypt(birth_date.isoformat()), is_child=birth_date.year > 2005)
                session.add(holder)
                session.flush()
                session.add(Pass(cardholder_id=holder.id, pass_number=pass_number, status=state,
                                 valid_from=date(today.year, 1, 1), valid_until=date(today.year, 12, 31)))
                if holder.is_child:
                    _grant_demo_budgets(session, holder.id, today)
                created += 1
        if created:
            audit.record(session, DEMO_ACTOR, "demo.loaded", f"source:{DEMO_SOURCE}", cardholders_created=created)
        merchant_key = _demo_merchant_key(session, info_path)
    children = [row for row in _DEMO_PEOPLE if row[5].year > 2005]
    info = DemoInfo(
        base_url=base_url, merchant_api_key=merchant_key,
        pass_numbers=[row[6] for row in children if row[7] == PassState.ACTIVE],
        blocked_pass_number=next(row[6] for row in children if row[7] == PassState.BLOCKED))
    info_path.parent.mkdir(parents=True, exist_ok=True)
    info_path.write_text(json.dumps(asdict(info), indent=2) + "\n", encoding="utf-8")
    return info


def _grant_demo_budgets(session, cardholder_id: int, today: date) -> None:  # type: ignore[no-untyped-def]
    for rule_code, rule_name, category, amount_cents in _DEMO_BUDGETS:
        budget = Budget(cardholder_id=cardholder_id, rule_code=rule_code, rule_name=rule_name, category=category,
                        period_key=str(today.year), period_start=date(today.year, 1, 1),
                        period_end=date(today.year, 12, 31))
        session.add(budget)
        session.flush()
        ledger.grant(session, budget.id, amount_cents, actor="demo")


def _demo_merchant_key(session, info_path: Path) -> str:  # type: ignore[no-untyped-def]
    """Reuse the key from an earlier run while it still works; else make a merchant."""
    if info_path.exists():
        previous_key = json.loads(info_path.read_text(encoding="utf-8")).get("merchant_api_key", "")
        if merchants.authenticate(session, previous_key) is not None:
            return previous_key
    existing = session.execute(select(Merchant).where(Merchant.name == "Demowinkel")).scalar_one_or_none()
    if existing is not None:
        issued = merchants.rotate_key(session, existing.id, grace=timedelta(0))
        audit.record(session, DEMO_ACTOR, "merchant.key_rotated", f"merchant:{issued.merchant_id}", grace_hours=0)
        return issued.api_key
    issued = merchants.add_merchant(session, "Demowinkel", ["*"], iban="NL91ABNA0417164300")
    audit.record(session, DEMO_ACTOR, "merchant.created", f"merchant:{issued.merchant_id}", categories="*")
    return issued.api_key


def _get_or_add(session, model, **keys):  # type: ignore[no-untyped-def]
    found = session.execute(select(model).filter_by(**keys)).scalar_one_or_none()
    if found is None:
        found = model(**keys)
        session.add(found)
        session.flush()
    return found
