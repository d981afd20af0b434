"""Demo data for `make run`, loaded the way real data arrives: an export, a configured source, a real sync.

It writes a small stadspas CSV export (test BSNs only, cp1252, one lost leading
zero, one blocked pass) into the folder of the configured ``demo`` source, runs
the nightly sync on it (which grants the budgets of config/budgets.yaml), and
makes a demo merchant that may redeem every category. Running it again is a
no-op night: the same export, nothing changes, the same merchant key.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path

from sqlalchemy import select

from adapter import audit, merchants
from adapter.models import Budget, BudgetStatus, Cardholder, Merchant, Pass, PassState, SyncStatus
from adapter.rules import load_rules
from adapter.runtime import Runtime
from adapter.sync import SyncResult, run_sync

DEMO_SOURCE = "demo"
DEMO_FILE = "demo.json"
DEMO_ACTOR = "demo"
DEMO_MERCHANT = "Demowinkel"

CSV_HEADER = ("Huishoudnummer", "Klantnummer", "BSN", "Voornamen", "Voorvoegsel", "Achternaam", "Geboortedatum",
              "Pasnummer", "Status", "Geldig vanaf", "Geldig tot", "Categorie", "Saldo")

# BSNs published for the BRP test environments (all 11-proof); never real people.
# household, cardholder, BSN as the export has it, first name, prefix, surname, born, pass number, status, K/M
_DEMO_ROWS = [
    ("H001", "P001", "999993653", "Fatima", "", "El Amrani", date(1984, 3, 2), "6400000000000011", "Actief", "M"),
    ("H001", "P002", "999993847", "Yasmina", "", "El Amrani", date(2014, 9, 14), "6400000000000029", "Actief", "K"),
    ("H001", "P003", "999992077", "Noah", "", "El Amrani", date(2017, 1, 30), "6400000000000037", "Actief", "K"),
    ("H002", "P004", "999993483", "Joke", "de", "Vries", date(1990, 6, 21), "6400000000000045", "Actief", "M"),
    ("H002", "P005", "999990482", "Daan", "de", "Vries", date(2012, 11, 5), "6400000000000052", "Actief", "K"),
    # A spreadsheet dropped the leading zeros of BSN 000009921; the mapping pads it back.
    ("H002", "P006", "9921", "Eva", "de", "Vries", date(2019, 4, 18), "6400000000000060", "Geblokkeerd", "K"),
    ("H003", "P007", "999995017", "Mehmet", "", "Öztürk", date(1981, 10, 9), "6400000000000078", "Actief", "M"),
    ("H003", "P008", "999990408", "Zeynep Ülkü", "", "Öztürk", date(2013, 5, 27), "6400000000000086", "Actief", "K"),
    ("H004", "P009", "999992806", "Sanne", "", "Bakker", date(1992, 12, 1), "6400000000000094", "Actief", "M"),
    ("H004", "P010", "999993926", "Chloé", "", "Bakker", date(2010, 2, 3), "6400000000000102", "Actief", "K"),
]


class DemoError(RuntimeError):
    pass


@dataclass(frozen=True)
class DemoInfo:
    base_url: str
    merchant_api_key: str
    pass_numbers: list[str]
    blocked_pass_number: str


def load_demo(runtime: Runtime, base_url: str, today: date) -> tuple[DemoInfo, SyncResult]:
    """Write the demo export, sync it through the ``demo`` source, and describe how to try the API."""
    settings = runtime.settings
    source = settings.sources.get(DEMO_SOURCE)
    if source is None or source.connector != "csv" or "path" not in source.options:
        raise DemoError("the demo needs a csv source named 'demo' with a 'path' option in the configuration "
                        "(config/adapter.yaml has one); add it and run `stadspas-adapter demo load` again")
    folder = (source.base_dir or Path.cwd()) / source.options["path"]
    write_demo_export(folder, today)

    from adapter.sources import iter_mapped  # the connector layer, as the nightly job uses it

    rules = load_rules(settings.budgets) if settings.budgets else None
    result = run_sync(runtime.db, runtime.vault, DEMO_SOURCE, iter_mapped(source, source_name=DEMO_SOURCE),
                      settings=settings.sync, rules=rules, today=today, actor=DEMO_ACTOR)
    if result.status == SyncStatus.REFUSED:
        # The demo source held other data (an export of the operator's own, e.g. from `demo-data`): its
        # guard sees the 10 demo households as most cardholders gone. `demo load` has no --force to offer.
        raise DemoError(f"the demo sync was refused: {result.summary()}\nThe '{DEMO_SOURCE}' source held other "
                        f"cardholders than the demo's (an export of your own in {folder.resolve()}?). To put the "
                        f"demo back, run `stadspas-adapter sync {DEMO_SOURCE} --force`, then `make run` again; "
                        f"or delete {settings.data_dir.resolve()} to start afresh")
    if not result.ok:
        raise DemoError(f"the demo sync did not succeed: {result.summary()}")
    info_path = settings.data_dir / DEMO_FILE
    with runtime.db.write() as session:
        if result.created:
            audit.record(session, DEMO_ACTOR, "demo.loaded", f"source:{DEMO_SOURCE}", sync_run=result.run_id,
                         cardholders_created=result.created)
        merchant_key = _demo_merchant_key(session, info_path)
    with runtime.db.read() as session:
        info = DemoInfo(base_url=base_url, merchant_api_key=merchant_key,
                        pass_numbers=_children_passes_with_money(session, today),
                        blocked_pass_number=_a_blocked_child_pass(session))
    info_path.parent.mkdir(parents=True, exist_ok=True)
    info_path.write_text(json.dumps(asdict(info), indent=2) + "\n", encoding="utf-8")
    return info, result


def write_demo_export(folder: Path, today: date) -> Path:
    """The export as a stadspas back office drops it: semicolons, cp1252, dd-mm-jjjj, one file per night."""
    pass_year_start = date(today.year if (today.month, today.day) >= (8, 1) else today.year - 1, 8, 1)
    valid_from, valid_until = pass_year_start, date(pass_year_start.year + 1, 7, 31)
    folder.mkdir(parents=True, exist_ok=True)
    for older in folder.glob("stadspas-*.csv"):
        older.unlink()  # one night's export: the demo's folder holds just the newest
    path = folder / f"stadspas-{today:%Y-%m-%d}.csv"
    with path.open("w", encoding="cp1252", newline="") as handle:
        writer = csv.writer(handle, delimiter=";", lineterminator="\r\n")
        writer.writerow(CSV_HEADER)
        for household, holder, bsn, first, prefix, surname, born, pass_number, status, category in _DEMO_ROWS:
            writer.writerow([household, holder, bsn, first, prefix, surname, f"{born:%d-%m-%Y}", pass_number,
                             status, f"{valid_from:%d-%m-%Y}", f"{valid_until:%d-%m-%Y}", category, "0,00"])
    return path


def _children_passes_with_money(session, today: date) -> list[str]:  # type: ignore[no-untyped-def]
    rows = session.execute(
        select(Pass.pass_number).join(Cardholder, Pass.cardholder_id == Cardholder.id)
        .join(Budget, Budget.cardholder_id == Cardholder.id)
        .where(Cardholder.source == DEMO_SOURCE, Cardholder.is_child.is_(True), Pass.status == PassState.ACTIVE,
               Budget.status == BudgetStatus.OPEN, Budget.balance_cents > 0, Budget.period_start <= today,
               Budget.period_end >= today)
        .distinct().order_by(Pass.pass_number))
    return list(rows.scalars())


def _a_blocked_child_pass(session) -> str:  # type: ignore[no-untyped-def]
    blocked = session.execute(
        select(Pass.pass_number).join(Cardholder, Pass.cardholder_id == Cardholder.id)
        .where(Cardholder.source == DEMO_SOURCE, Cardholder.is_child.is_(True), Pass.status == PassState.BLOCKED)
        .order_by(Pass.pass_number).limit(1)).scalar_one_or_none()
    if blocked is None:
        raise DemoError("the demo export holds no blocked child pass; was the demo source's mapping changed?")
    return blocked


def _demo_merchant_key(session, info_path: Path) -> str:  # type: ignore[no-untyped-def]
    """Reuse the key from an earlier run while it still works; else make (or re-key) the demo merchant."""
    if info_path.exists():
        previous_key = json.loads(info_path.read_text(encoding="utf-8")).get("merchant_api_key", "")
        if merchants.authenticate(session, previous_key) is not None:
            return previous_key
    existing = session.execute(select(Merchant).where(Merchant.name == DEMO_MERCHANT)).scalar_one_or_none()
    if existing is not None:
        issued = merchants.rotate_key(session, existing.id, grace=timedelta(0))
        audit.record(session, DEMO_ACTOR, "merchant.key_rotated", f"merchant:{issued.merchant_id}", grace_hours=0)
        return issued.api_key
    issued = merchants.add_merchant(session, DEMO_MERCHANT, ["*"], iban="NL91ABNA0417164300")
    audit.record(session, DEMO_ACTOR, "merchant.created", f"merchant:{issued.merchant_id}", categories="*")
    return issued.api_key
