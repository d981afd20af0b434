"""The figures the municipality reports: uptake, spending, budget totals, sync state.

One code path for the dashboard, the CSV downloads and ``stadspas-adapter
report``. Money comes straight from the ledger (entries, not cached balances)
and is grouped by local month (Europe/Amsterdam). Nothing is left out
silently: expired budgets are rows of their own, a budget without a category
is counted under "(geen)", a child without a birth date under "onbekend".
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from adapter.crypto import Vault
from adapter.csvexport import euros_text, to_csv_bytes
from adapter.models import (
    Budget,
    Cardholder,
    EntryKind,
    LedgerEntry,
    Merchant,
    Redemption,
    SyncRecordOutcome,
    SyncRun,
    SyncStatus,
)
from adapter.periods import LOCAL_ZONE, Period, local_midnight_utc, local_month
from adapter.personal import open_sealed

NO_CATEGORY = "(geen)"
# Written out, not "4-11": Dutch Excel opens a CSV cell "4-11" as the date 4 November.
AGE_BANDS = ((0, 3, "0 t/m 3"), (4, 11, "4 t/m 11"), (12, 17, "12 t/m 17"), (18, 200, "18 en ouder"))
UNKNOWN_AGE = "onbekend"
TOTAL = "totaal"
# The band of a rule's total over every age: a child whose budgets fall in two bands (two periods, a birthday
# between them) is in both bands' rows, and once in this one.
ALL_AGES = "alle leeftijden"


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    money: bool = False  # integer cents, shown as euros


@dataclass(frozen=True)
class Table:
    name: str  # used in file names and URLs
    title: str
    columns: tuple[Column, ...]
    rows: list[tuple[Any, ...]]

    def column_values(self, key: str) -> list[Any]:
        index = [column.key for column in self.columns].index(key)
        return [row[index] for row in self.rows]

    def formatted_rows(self, *, grouped: bool = False) -> list[list[str]]:
        """The rows as text; ``grouped``, for the page: amounts with thousands separators, which a CSV leaves out
        for Excel."""
        return [[_cell(value, column, grouped=grouped) for value, column in zip(row, self.columns)]
                for row in self.rows]

    def csv_bytes(self) -> bytes:
        return to_csv_bytes([column.label for column in self.columns], self.formatted_rows())

    def as_records(self) -> list[dict[str, Any]]:
        """For JSON: money keeps integer cents, under keys ending in ``_cents``."""
        return [{column.key: value for column, value in zip(self.columns, row)} for row in self.rows]


def _cell(value: Any, column: Column, *, grouped: bool = False) -> str:
    if value is None:
        return ""
    if column.money:
        return euros_text(value, grouped=grouped)
    if isinstance(value, bool):
        return "ja" if value else "nee"
    return str(value)


# ---------------------------------------------------------------- uptake

def uptake(session: Session, vault: Vault, period: Period) -> Table:
    """Children with a budget vs children with at least one (not fully reversed) redemption,
    per month, rule and age band (age on the budget's first day); a ``totaal`` row per rule and band
    counts each child once over the whole period, and one per rule with the band ``ALL_AGES`` once over
    every band."""
    budgets = session.execute(
        select(Budget.id, Budget.cardholder_id, Budget.rule_code, Budget.period_start, Budget.period_end)
        .where(Budget.period_start <= period.last_day, Budget.period_end >= period.first_day)
    ).all()
    birth_dates = _birth_dates(session, vault, {row.cardholder_id for row in budgets})
    budget_keys = {row.id: (row.cardholder_id, row.rule_code, _age_band(birth_dates.get(row.cardholder_id),
                                                                      row.period_start)) for row in budgets}
    eligible: dict[tuple[str, str, str], set[int]] = defaultdict(set)
    redeemed: dict[tuple[str, str, str], set[int]] = defaultdict(set)
    months_of: dict[tuple[date, date], list[str]] = {}  # budgets share a handful of periods
    for row in budgets:
        holder, rule, band = budget_keys[row.id]
        eligible[(TOTAL, rule, band)].add(holder)
        eligible[(TOTAL, rule, ALL_AGES)].add(holder)
        budget_period = (row.period_start, row.period_end)
        if budget_period not in months_of:
            months_of[budget_period] = _months_within(period, *budget_period)
        for month in months_of[budget_period]:
            eligible[(month, rule, band)].add(holder)
    for budget_id, created_at in session.execute(
        select(Redemption.budget_id, Redemption.created_at).where(
            Redemption.created_at >= period.start_utc, Redemption.created_at < period.end_utc,
            Redemption.amount_cents > Redemption.reversed_cents)
    ):
        if budget_id not in budget_keys:
            continue  # a budget outside the period cannot be spent inside it; kept for safety
        holder, rule, band = budget_keys[budget_id]
        redeemed[(local_month(created_at), rule, band)].add(holder)
        redeemed[(TOTAL, rule, band)].add(holder)
        redeemed[(TOTAL, rule, ALL_AGES)].add(holder)
    rows = []
    for key in sorted(eligible, key=lambda k: (k[0] == TOTAL, k[0], k[1], _band_order(k[2]))):
        month, rule, band = key
        eligible_count, redeemed_count = len(eligible[key]), len(redeemed.get(key, ()))
        share = f"{round(100 * redeemed_count / eligible_count)}%" if eligible_count else "-"
        rows.append((month, rule, band, eligible_count, redeemed_count, share))
    return Table("uptake", "Bereik: kinderen met tegoed en kinderen die het gebruikten", (
        Column("month", "maand"), Column("rule", "regeling"), Column("age_band", "leeftijd"),
        Column("children_with_budget", "kinderen met tegoed"),
        Column("children_who_redeemed", "kinderen die besteedden"), Column("share", "bereik")), rows)


def _birth_dates(session: Session, vault: Vault, cardholder_ids: set[int]) -> dict[int, date]:
    found: dict[int, date] = {}
    if not cardholder_ids:
        return found
    for holder_id, token in session.execute(
        select(Cardholder.id, Cardholder.personal_encrypted).where(Cardholder.id.in_(cardholder_ids))
    ):
        born = open_sealed(vault, token).birth_date
        if born is not None:
            found[holder_id] = born
    return found


def _age_band(born: date | None, on: date) -> str:
    if born is None:
        return UNKNOWN_AGE
    age = on.year - born.year - ((on.month, on.day) < (born.month, born.day))
    for low, high, label in AGE_BANDS:
        if low <= age <= high:
            return label
    return UNKNOWN_AGE


def _band_order(label: str) -> int:
    labels = [band[2] for band in AGE_BANDS] + [UNKNOWN_AGE, ALL_AGES]
    return labels.index(label) if label in labels else len(labels)


def _months_within(period: Period, first_day: date, last_day: date) -> list[str]:
    """The period's months that a budget from ``first_day`` to ``last_day`` overlaps. Only the budget's own
    months are walked: walking every month of a long period for each budget (1900..2999 is 13,200 months)
    kept the dashboard busy for minutes, past the web worker's timeout."""
    start, end = max(first_day, period.first_day), min(last_day, period.last_day)
    if end < start:
        return []
    return Period(start, end, "").months()


# ---------------------------------------------------------------- spending

def spending_by_category(session: Session, period: Period) -> Table:
    totals = _spending(session, period, by_merchant=False)
    rows = [(month, category, *figures) for (month, category), figures in sorted(totals.items())]
    return Table("spending-by-category", "Besteding per categorie per maand", (
        Column("month", "maand"), Column("category", "categorie"), Column("redemptions", "aantal"),
        Column("redeemed_cents", "besteed", True), Column("reversed_cents", "teruggeboekt", True),
        Column("net_cents", "netto besteed", True)), rows)


def spending_by_merchant(session: Session, period: Period) -> Table:
    totals = _spending(session, period, by_merchant=True)
    names = dict(session.execute(select(Merchant.id, Merchant.name)).all())
    rows = [(month, merchant_id, names.get(merchant_id, ""), *figures)
            for (month, merchant_id), figures in sorted(totals.items())]
    return Table("spending-by-merchant", "Besteding per aanbieder per maand", (
        Column("month", "maand"), Column("merchant_id", "aanbieder-id"), Column("merchant", "aanbieder"),
        Column("redemptions", "aantal"), Column("redeemed_cents", "besteed", True),
        Column("reversed_cents", "teruggeboekt", True), Column("net_cents", "netto besteed", True)), rows)


def _spending(session: Session, period: Period, *, by_merchant: bool) -> dict[tuple[str, Any], list[int]]:
    """(month, category or merchant) -> [redemption count, redeemed, reversed, net], from ledger entries."""
    totals: dict[tuple[str, Any], list[int]] = {}
    statement = (
        select(LedgerEntry.kind, LedgerEntry.amount_cents, LedgerEntry.created_at, Budget.category,
               Redemption.merchant_id)
        .join(Budget, Budget.id == LedgerEntry.budget_id)
        .join(Redemption, Redemption.id == LedgerEntry.redemption_id)
        .where(LedgerEntry.kind.in_([EntryKind.REDEMPTION, EntryKind.REVERSAL]),
               LedgerEntry.created_at >= period.start_utc, LedgerEntry.created_at < period.end_utc)
    )
    for kind, amount_cents, created_at, category, merchant_id in session.execute(statement):
        group = merchant_id if by_merchant else (category or NO_CATEGORY)
        figures = totals.setdefault((local_month(created_at), group), [0, 0, 0, 0])
        if kind == EntryKind.REDEMPTION:
            figures[0] += 1
            figures[1] += -amount_cents
        else:
            figures[2] += amount_cents
        figures[3] += -amount_cents
    return totals


# ---------------------------------------------------------------- budget totals

def budget_totals(session: Session, period: Period) -> Table:
    """Per month: granted, spent (net of reversals), expired, corrected, and what remains at the month's end.
    remaining(end) = remaining(start) + granted - spent - expired + corrected, for every row."""
    months = period.months()
    per_month = {month: {"granted": 0, "spent": 0, "expired": 0, "corrected": 0} for month in months}
    for kind, amount_cents, created_at in session.execute(
        select(LedgerEntry.kind, LedgerEntry.amount_cents, LedgerEntry.created_at).where(
            LedgerEntry.created_at >= period.start_utc, LedgerEntry.created_at < period.end_utc)
    ):
        figures = per_month[local_month(created_at)]
        if kind == EntryKind.GRANT:
            figures["granted"] += amount_cents
        elif kind in (EntryKind.REDEMPTION, EntryKind.REVERSAL):
            figures["spent"] += -amount_cents
        elif kind == EntryKind.EXPIRY:
            figures["expired"] += -amount_cents
        else:
            figures["corrected"] += amount_cents
    remaining = _ledger_sum_before(session, period.first_day)
    rows = []
    for month in months:
        figures = per_month[month]
        remaining += figures["granted"] - figures["spent"] - figures["expired"] + figures["corrected"]
        rows.append((month, figures["granted"], figures["spent"], figures["expired"], figures["corrected"],
                     remaining))
    rows.append((TOTAL, *(sum(per_month[m][k] for m in months) for k in ("granted", "spent", "expired", "corrected")),
                 remaining))
    return Table("budget-totals", "Toegekend, besteed, vervallen en resterend per maand", (
        Column("month", "maand"), Column("granted_cents", "toegekend", True), Column("spent_cents", "besteed", True),
        Column("expired_cents", "vervallen", True), Column("corrected_cents", "correcties", True),
        Column("remaining_cents", "resterend aan eind", True)), rows)


def _ledger_sum_before(session: Session, day: date) -> int:
    total = session.execute(select(func.coalesce(func.sum(LedgerEntry.amount_cents), 0))
                            .where(LedgerEntry.created_at < local_midnight_utc(day))).scalar_one()
    return int(total)


def budgets_by_status(session: Session, period: Period) -> Table:
    """Budgets whose period overlaps the selected one, per rule, budget period and status (expired included).
    granted - spent - expired + corrected = balance, for every row."""
    spent = (
        select(LedgerEntry.budget_id,
               func.sum(LedgerEntry.amount_cents).filter(
                   LedgerEntry.kind.in_([EntryKind.REDEMPTION, EntryKind.REVERSAL])).label("spent"),
               func.sum(LedgerEntry.amount_cents).filter(LedgerEntry.kind == EntryKind.EXPIRY).label("expired"),
               func.sum(LedgerEntry.amount_cents).filter(LedgerEntry.kind == EntryKind.CORRECTION).label("corrected"))
        .group_by(LedgerEntry.budget_id).subquery()
    )
    statement = (
        select(Budget.rule_code, Budget.period_key, Budget.status, func.count(Budget.id),
               func.coalesce(func.sum(Budget.granted_cents), 0), func.coalesce(func.sum(-spent.c.spent), 0),
               func.coalesce(func.sum(-spent.c.expired), 0), func.coalesce(func.sum(spent.c.corrected), 0),
               func.coalesce(func.sum(Budget.balance_cents), 0))
        .outerjoin(spent, spent.c.budget_id == Budget.id)
        .where(Budget.period_start <= period.last_day, Budget.period_end >= period.first_day)
        .group_by(Budget.rule_code, Budget.period_key, Budget.status)
        .order_by(Budget.period_key, Budget.rule_code, Budget.status)
    )
    rows = [(rule, period_key, _STATUS_LABELS.get(status.value, status.value), int(count), int(granted), int(spent_),
             int(expired), int(corrected), int(balance))
            for rule, period_key, status, count, granted, spent_, expired, corrected, balance
            in session.execute(statement)]
    # Said in the title: beside the period's own figures, this table's "besteed" and "saldo" for a past month
    # (everything those budgets ever had) read as a contradiction of the month's spending.
    return Table("budgets-by-status", "Tegoeden die in deze periode liepen, per regeling en status: stand van "
                 "vandaag, ook wat na de periode besteed is (vervallen tegoeden apart)", (
        Column("rule", "regeling"), Column("budget_period", "tegoedperiode"), Column("status", "status"),
        Column("budgets", "aantal"), Column("granted_cents", "toegekend", True), Column("spent_cents", "besteed", True),
        Column("expired_cents", "vervallen", True), Column("corrected_cents", "correcties", True),
        Column("balance_cents", "saldo", True)), rows)


_STATUS_LABELS = {"open": "open", "expired": "vervallen"}


# ---------------------------------------------------------------- sync state

@dataclass(frozen=True)
class SyncOverview:
    last_runs: Table
    rejected: Table
    refused_sources: frozenset[str]
    last_started: Mapping[str, datetime]  # when each source's last run (dry runs aside) started


def sync_overview(session: Session, rejected_limit: int = 200) -> SyncOverview:
    """The last run per source, and the records that run rejected with their reasons.

    A dry run changes nothing, so it is not the source's last sync: one tried after a refused night would
    otherwise hide that night (and its red) from the dashboard."""
    latest = (select(SyncRun.source, func.max(SyncRun.id).label("run_id"))
              .where(SyncRun.status != SyncStatus.DRY_RUN).group_by(SyncRun.source).subquery())
    runs = list(session.execute(
        select(SyncRun).join(latest, latest.c.run_id == SyncRun.id).order_by(SyncRun.source)).scalars())
    run_rows = [(run.source, run.id, _STATUS_LABELS_SYNC.get(run.status.value, run.status.value),
                 _when(run.started_at), _when(run.finished_at), run.records_read, run.created, run.updated,
                 run.unchanged, run.rejected, run.missing, run.deactivated, run.reason or "") for run in runs]
    rejected_rows = [
        (source, run_id, record_key, reason or "")
        for source, run_id, record_key, reason in session.execute(
            select(SyncRun.source, SyncRecordOutcome.run_id, SyncRecordOutcome.record_key, SyncRecordOutcome.reason)
            .join(SyncRun, SyncRun.id == SyncRecordOutcome.run_id)
            .where(SyncRecordOutcome.run_id.in_([run.id for run in runs]), SyncRecordOutcome.outcome == "rejected")
            .order_by(SyncRun.source, SyncRecordOutcome.id).limit(rejected_limit))
    ]
    return SyncOverview(
        Table("sync-runs", "Laatste synchronisatie per bron", (
            Column("source", "bron"), Column("run_id", "run"), Column("status", "status"),
            Column("started_at", "gestart"), Column("finished_at", "klaar"), Column("read", "gelezen"),
            Column("created", "nieuw"), Column("updated", "gewijzigd"), Column("unchanged", "ongewijzigd"),
            Column("rejected", "afgekeurd"), Column("missing", "ontbrekend"), Column("deactivated", "gedeactiveerd"),
            Column("reason", "reden")), run_rows),
        Table("sync-rejected", "Afgekeurde records van de laatste run", (
            Column("source", "bron"), Column("run_id", "run"), Column("record", "record"),
            Column("reason", "reden")), rejected_rows),
        frozenset(run.source for run in runs if run.status in (SyncStatus.REFUSED, SyncStatus.FAILED)),
        {run.source: run.started_at for run in runs})


def sources_not_synced_since(overview: SyncOverview, sources: Iterable[str],
                             since: datetime) -> list[tuple[str, str]]:
    """Of ``sources``, those whose last run (dry runs aside) started before ``since``, or that never ran: each
    with when its last run started ("" for never). A scheduler that stopped leaves the last run green for days."""
    last_started = overview.last_started
    return [(source, _when(last_started.get(source))) for source in sorted(sources)
            if last_started.get(source) is None or last_started[source] < since]


_STATUS_LABELS_SYNC = {"running": "bezig", "succeeded": "geslaagd", "failed": "mislukt", "refused": "geweigerd",
                       "dry_run": "proefrun"}


def _when(instant: Any) -> str:
    if instant is None:
        return ""
    return instant.astimezone(LOCAL_ZONE).strftime("%Y-%m-%d %H:%M")


# ---------------------------------------------------------------- the report kinds the CLI offers

def report_tables(kind: str, session: Session, vault: Vault, period: Period) -> list[Table]:
    if kind == "uptake":
        return [uptake(session, vault, period)]
    if kind == "spending":
        return [spending_by_category(session, period), spending_by_merchant(session, period)]
    if kind == "budgets":
        return [budget_totals(session, period), budgets_by_status(session, period)]
    raise ValueError(f"unknown report {kind!r}; choose uptake, spending or budgets")


REPORT_KINDS = ("uptake", "spending", "budgets")
