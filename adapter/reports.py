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
import functools
from datetime import date, datetime, timezone
from typing import Any

from sqlalchemy import Select, String, and_, func, or_, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.orm import Session

from adapter import age_bands
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
UNKNOWN_AGE = age_bands.UNKNOWN_LABEL
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
    every band.

    Counted in the database by the band each budget keeps (``adapter.age_bands``). Should a budget keep none
    (migration 0011 worked out those stored before, and the grants set each new one's), the birth dates of the
    budgets without one are decrypted instead, as every budget's were: 10 s and 450 MB of a web worker for a
    year at 200,000 cardholders."""
    overlapping = _overlapping(period)
    if session.execute(select(Budget.id).where(Budget.age_band.is_(None), *overlapping).limit(1)).first():
        eligible, band_of_budget = _eligible_decrypting(session, vault, period)
    else:
        eligible, band_of_budget = _eligible_counted(session, period), {}
    redeemed: dict[tuple[str, str, str], set[int]] = defaultdict(set)
    for budget_id, holder, rule, stored_band, hour in session.execute(
        select(Budget.id, Budget.cardholder_id, Budget.rule_code, Budget.age_band, _utc_hour(Redemption.created_at))
        .join(Budget, Budget.id == Redemption.budget_id)
        # A budget outside the period cannot be spent inside it but in its grace days: it is not counted.
        .where(Redemption.created_at >= period.start_utc, Redemption.created_at < period.end_utc,
               Redemption.amount_cents > Redemption.reversed_cents, *overlapping)
        .distinct()
    ):
        band = age_bands.LABELS[stored_band] if stored_band is not None else band_of_budget[budget_id]
        redeemed[(_local_month_of_hour(hour), rule, band)].add(holder)
        redeemed[(TOTAL, rule, band)].add(holder)
        redeemed[(TOTAL, rule, ALL_AGES)].add(holder)
    rows = []
    for key in sorted(eligible, key=lambda k: (k[0] == TOTAL, k[0], k[1], _band_order(k[2]))):
        month, rule, band = key
        eligible_count, redeemed_count = eligible[key], len(redeemed.get(key, ()))
        share = f"{round(100 * redeemed_count / eligible_count)}%" if eligible_count else "-"
        rows.append((month, rule, band, eligible_count, redeemed_count, share))
    return Table("uptake", "Bereik: kinderen met tegoed en kinderen die het gebruikten", (
        Column("month", "maand"), Column("rule", "regeling"), Column("age_band", "leeftijd"),
        Column("children_with_budget", "kinderen met tegoed"),
        Column("children_who_redeemed", "kinderen die besteedden"), Column("share", "bereik")), rows)


# (month or TOTAL, rule, band label or ALL_AGES) -> children with a budget
_Eligible = dict[tuple[str, str, str], int]


def _overlapping(period: Period) -> tuple:  # type: ignore[type-arg]
    """The conditions of a budget whose own period overlaps ``period``."""
    return Budget.period_start <= period.last_day, Budget.period_end >= period.first_day


def _eligible_counted(session: Session, period: Period) -> _Eligible:
    """The children with a budget, counted in the database by the bands the budgets keep.

    A month's children of a rule and band are those of the budgets whose period overlaps the month. Mostly one
    budget period does (a rule's periods follow each other by whole months); only where several do (a period
    starting mid-month, or a rule that changed its kind of period) can a child be in two of them, and those
    months are counted again over their periods together."""
    overlapping = _overlapping(period)
    eligible: _Eligible = defaultdict(int)
    groups_of: dict[tuple[str, str, str], list[tuple[date, date, int]]] = defaultdict(list)
    periods_of: dict[str, set[tuple[date, date]]] = defaultdict(set)
    # Within one period of a rule a child is in one band (its age on the period's first day). Counted as distinct
    # children, not budgets: the budgets' unique key is the period's key, and two keys of a rule can name the same
    # dates (a rule made a once-rule while running opens a second budget over them).
    for rule, band_code, first_day, last_day, children in session.execute(
        select(Budget.rule_code, Budget.age_band, Budget.period_start, Budget.period_end,
               func.count(Budget.cardholder_id.distinct()))
        .where(*overlapping).group_by(Budget.rule_code, Budget.age_band, Budget.period_start, Budget.period_end)
    ):
        periods_of[rule].add((first_day, last_day))
        for month in _months_within(period, first_day, last_day):
            groups_of[(month, rule, band_code)].append((first_day, last_day, children))
        # The totals of a rule with one period in the selected one; the others' are counted below.
        eligible[(TOTAL, rule, age_bands.LABELS[band_code])] += children
        eligible[(TOTAL, rule, ALL_AGES)] += children
    for (month, rule, band_code), groups in groups_of.items():
        eligible[(month, rule, age_bands.LABELS[band_code])] = groups[0][2] if len(groups) == 1 else int(
            session.execute(select(func.count(Budget.cardholder_id.distinct())).where(
                Budget.rule_code == rule, Budget.age_band == band_code,
                or_(*(and_(Budget.period_start == first_day, Budget.period_end == last_day)
                      for first_day, last_day, _ in groups)))).scalar_one())
    # A rule with several periods in the selected one: a child with budgets in two of them is one child of its
    # rule, and of its band, in the totals.
    spanning = sorted(rule for rule, periods in periods_of.items() if len(periods) > 1)
    if spanning:
        for rule, band_code, children in session.execute(
            select(Budget.rule_code, Budget.age_band, func.count(Budget.cardholder_id.distinct()))
            .where(*overlapping, Budget.rule_code.in_(spanning)).group_by(Budget.rule_code, Budget.age_band)
        ):
            eligible[(TOTAL, rule, age_bands.LABELS[band_code])] = children
        for rule, children in session.execute(
            select(Budget.rule_code, func.count(Budget.cardholder_id.distinct()))
            .where(*overlapping, Budget.rule_code.in_(spanning)).group_by(Budget.rule_code)
        ):
            eligible[(TOTAL, rule, ALL_AGES)] = children
    return dict(eligible)


def _eligible_decrypting(session: Session, vault: Vault, period: Period) -> tuple[_Eligible, dict[int, str]]:
    """``_eligible_counted`` for budgets of which some keep no band: theirs worked out from the child's birth date,
    the others' as kept (a band worked out again from a birth date corrected since, or removed by retention,
    would put the child in another band than its payments); with the band label of each budget."""
    overlapping = _overlapping(period)
    budgets = session.execute(
        select(Budget.id, Budget.cardholder_id, Budget.rule_code, Budget.period_start, Budget.period_end,
               Budget.age_band).where(*overlapping)
    ).all()
    birth_dates = _birth_dates(session, vault, select(Budget.cardholder_id).where(*overlapping,
                                                                                  Budget.age_band.is_(None)))
    band_of_budget = {row.id: age_bands.LABELS[row.age_band if row.age_band is not None else age_bands.band_of(
        birth_dates.get(row.cardholder_id), row.period_start)] for row in budgets}
    eligible: dict[tuple[str, str, str], set[int]] = defaultdict(set)
    months_of: dict[tuple[date, date], list[str]] = {}  # budgets share a handful of periods
    for row in budgets:
        holder, rule, band = row.cardholder_id, row.rule_code, band_of_budget[row.id]
        eligible[(TOTAL, rule, band)].add(holder)
        eligible[(TOTAL, rule, ALL_AGES)].add(holder)
        budget_period = (row.period_start, row.period_end)
        if budget_period not in months_of:
            months_of[budget_period] = _months_within(period, *budget_period)
        for month in months_of[budget_period]:
            eligible[(month, rule, band)].add(holder)
    return {key: len(children) for key, children in eligible.items()}, band_of_budget


def _birth_dates(session: Session, vault: Vault, cardholder_ids: Select) -> dict[int, date]:  # type: ignore[type-arg]
    """The birth dates of the cardholders ``cardholder_ids`` selects: by that query, not a list of their ids,
    which PostgreSQL refused from 65,536 children on (its limit of parameters in a statement)."""
    found: dict[int, date] = {}
    for holder_id, token in session.execute(
        select(Cardholder.id, Cardholder.personal_encrypted).where(Cardholder.id.in_(cardholder_ids))
    ):
        born = None if token is None else open_sealed(vault, token).birth_date
        if born is not None:
            found[holder_id] = born
    return found


def _band_order(label: str) -> int:
    labels = [*(band[3] for band in age_bands.BANDS), UNKNOWN_AGE, ALL_AGES]
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
    grouped_by = Redemption.merchant_id if by_merchant else Budget.category
    hour = _utc_hour(LedgerEntry.created_at)
    statement = (
        select(LedgerEntry.kind, hour, grouped_by, func.count(), func.sum(LedgerEntry.amount_cents))
        .join(Budget, Budget.id == LedgerEntry.budget_id)
        .join(Redemption, Redemption.id == LedgerEntry.redemption_id)
        .where(LedgerEntry.kind.in_([EntryKind.REDEMPTION, EntryKind.REVERSAL]),
               LedgerEntry.created_at >= period.start_utc, LedgerEntry.created_at < period.end_utc)
        .group_by(LedgerEntry.kind, hour, grouped_by)
    )
    for kind, hour_text, group, entries, amount_cents in session.execute(statement):
        amount_cents = int(amount_cents)
        figures = totals.setdefault((_local_month_of_hour(hour_text), group if by_merchant else group or NO_CATEGORY),
                                    [0, 0, 0, 0])
        if kind == EntryKind.REDEMPTION:
            figures[0] += entries
            figures[1] += -amount_cents
        else:
            figures[2] += amount_cents
        figures[3] += -amount_cents
    return totals


# ---------------------------------------------------------------- sums by the hour

class _utc_hour(FunctionElement):  # type: ignore[type-arg]
    """A moment's hour in UTC as text, "YYYY-MM-DD HH": the ledger and the redemptions are summed per hour in
    the database, and each hour's sums go to their local month here. Summed in Python row by row, a year's
    entries of a city (370,000 first grants alone) kept a web worker busy for 6 s. Every hour lies within one
    Amsterdam month: the zone has moved by whole hours from UTC since 1940, long before any entry."""

    type = String()
    inherit_cache = True


@compiles(_utc_hour, "sqlite")
def _utc_hour_sqlite(element, compiler, **kw):  # type: ignore[no-untyped-def]
    # SQLAlchemy stores a moment on SQLite as the text "YYYY-MM-DD HH:MM:SS.ffffff", in UTC (UtcDateTime).
    return f"substr({compiler.process(list(element.clauses)[0], **kw)}, 1, 13)"


@compiles(_utc_hour, "postgresql")
def _utc_hour_postgresql(element, compiler, **kw):  # type: ignore[no-untyped-def]
    return f"to_char({compiler.process(list(element.clauses)[0], **kw)} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24')"


@functools.lru_cache(maxsize=20_000)  # two years of hours
def _local_month_of_hour(hour_text: str) -> str:
    return local_month(datetime.strptime(hour_text, "%Y-%m-%d %H").replace(tzinfo=timezone.utc))


# ---------------------------------------------------------------- budget totals

def budget_totals(session: Session, period: Period) -> Table:
    """Per month: granted, spent (net of reversals), expired, corrected, and what remains at the month's end.
    remaining(end) = remaining(start) + granted - spent - expired + corrected, for every row."""
    months = period.months()
    per_month = {month: {"granted": 0, "spent": 0, "expired": 0, "corrected": 0} for month in months}
    hour = _utc_hour(LedgerEntry.created_at)
    for kind, hour_text, amount_cents in session.execute(
        select(LedgerEntry.kind, hour, func.sum(LedgerEntry.amount_cents)).where(
            LedgerEntry.created_at >= period.start_utc, LedgerEntry.created_at < period.end_utc)
        .group_by(LedgerEntry.kind, hour)
    ):
        amount_cents = int(amount_cents)
        figures = per_month[_local_month_of_hour(hour_text)]
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
        # Not the first grants, one per budget and most of the ledger, which none of these sums counts.
        .where(LedgerEntry.kind != EntryKind.GRANT)
        .group_by(LedgerEntry.budget_id).subquery()
    )
    statement = (
        select(Budget.rule_code, Budget.period_key, Budget.status, func.count(Budget.id),
               func.coalesce(func.sum(Budget.granted_cents), 0), func.coalesce(func.sum(-spent.c.spent), 0),
               func.coalesce(func.sum(-spent.c.expired), 0), func.coalesce(func.sum(spent.c.corrected), 0),
               func.coalesce(func.sum(Budget.balance_cents), 0))
        .outerjoin(spent, spent.c.budget_id == Budget.id)
        .where(*_overlapping(period))
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
