"""The municipality's dashboard: sync state, uptake, spending, budget totals, every table as CSV."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

from flask import Blueprint, Response, current_app, g, redirect, render_template, request, session, url_for

from adapter import admins, reports, web_sessions
from adapter.models import utcnow
from adapter.periods import PeriodError, local_day, parse_period
from adapter.settlement import list_batches
from adapter.web import security
from adapter.web.charts import Series, bar_chart

blueprint = Blueprint("admin", __name__, template_folder="templates")
SESSION_KEY = security.ADMIN_SIGN_IN  # the sign-in's row id (adapter.web_sessions), not the account's


def _runtime():  # type: ignore[no-untyped-def]
    return current_app.extensions["adapter_runtime"]


@blueprint.before_request
def _require_sign_in():  # type: ignore[no-untyped-def]
    if request.endpoint in ("admin.sign_in", "admin.sign_in_form"):
        return None
    session_id = session.get(SESSION_KEY)
    account = None
    if session_id is not None:
        with _runtime().db.read() as db_session:
            admin_id = web_sessions.subject_of(db_session, session_id, web_sessions.ADMIN)
            account = db_session.get(admins.AdminAccount, admin_id) if admin_id is not None else None
    if account is None or not account.active:
        session.pop(SESSION_KEY, None)
        return redirect(url_for("admin.sign_in_form"), code=303)
    g.admin = account
    return None


@blueprint.get("/aanmelden")
def sign_in_form():  # type: ignore[no-untyped-def]
    return render_template("admin/sign_in.html")


@blueprint.post("/aanmelden")
def sign_in():  # type: ignore[no-untyped-def]
    runtime = _runtime()
    limit = runtime.settings.api.rate_limits.failed_sign_ins_per_minute
    bucket = f"web-admin-sign-in:{security.client_ip()}"
    if security.sign_in_blocked(bucket, limit):
        return render_template("admin/sign_in.html",
                               error="Te veel mislukte pogingen. Wacht een minuut en probeer het opnieuw."), 429
    with runtime.db.read() as db_session:
        account = admins.authenticate(db_session, request.form.get("name", ""), request.form.get("password", ""))
    if account is None:
        security.count_failed_sign_in(bucket, limit)
        return render_template("admin/sign_in.html", error="Naam of wachtwoord klopt niet."), 401
    with runtime.db.write() as db_session:
        security.end_sign_ins(db_session)  # any earlier one in this cookie
        session_id = web_sessions.start(db_session, web_sessions.ADMIN, account.id)
    security.start_session(**{SESSION_KEY: session_id})
    return redirect(url_for("admin.dashboard"), code=303)


@blueprint.post("/afmelden")
def sign_out():  # type: ignore[no-untyped-def]
    # On the server too, for every sign-in the cookie holds: a copy of this cookie lets nobody in after this.
    with _runtime().db.write() as db_session:
        security.end_sign_ins(db_session)
    session.clear()
    return redirect(url_for("admin.sign_in_form"), code=303)


def _period():  # type: ignore[no-untyped-def]
    text = request.args.get("periode", "").strip() or str(local_day(utcnow()).year)
    return parse_period(text)


@blueprint.get("/")
def dashboard():  # type: ignore[no-untyped-def]
    try:
        period = _period()
    except PeriodError:
        return render_template("admin/dashboard.html", period_error=True, period_text=request.args.get("periode")), 400
    runtime = _runtime()
    with runtime.db.read() as db_session:
        sync = reports.sync_overview(db_session)
        overdue = _overdue_sources(sync)
        tables = _tables(db_session, period)
    charts = _charts(tables, period)
    return render_template("admin/dashboard.html", period=period, period_text=period.label, sync=sync,
                           overdue=overdue, tables=tables, charts=charts, batches=list_batches(runtime.db))


# A nightly sync that has not started for this long is overdue: a day, and the hours the scheduler may still
# catch up a missed night (adapter.scheduler runs one up to 4 hours late), less what a DST night adds.
_OVERDUE_AFTER = timedelta(hours=26)


def _overdue_sources(sync: reports.SyncOverview) -> list[tuple[str, str, str]]:
    """(source, its nightly time, when it last started or "") for each scheduled source whose sync is overdue."""
    scheduled = {name: source.schedule for name, source in _runtime().settings.sources.items()
                 if source.enabled and source.schedule is not None}
    return [(name, scheduled[name], last_started) for name, last_started
            in reports.sources_not_synced_since(sync, scheduled, utcnow() - _OVERDUE_AFTER)]


# Each table's name (its CSV's) and how it is made. The uptake opens every child's sealed birth date, the
# costliest figure by far: a download of another table must not make it too.
_TABLE_MAKERS = {
    "uptake": lambda db_session, vault, period: reports.uptake(db_session, vault, period),
    "spending-by-category": lambda db_session, vault, period: reports.spending_by_category(db_session, period),
    "spending-by-merchant": lambda db_session, vault, period: reports.spending_by_merchant(db_session, period),
    "budget-totals": lambda db_session, vault, period: reports.budget_totals(db_session, period),
    "budgets-by-status": lambda db_session, vault, period: reports.budgets_by_status(db_session, period),
}


def _tables(db_session, period) -> dict[str, reports.Table]:  # type: ignore[no-untyped-def]
    vault = _runtime().vault
    return {name: make(db_session, vault, period) for name, make in _TABLE_MAKERS.items()}


def _charts(tables: dict[str, reports.Table], period) -> dict[str, object]:  # type: ignore[no-untyped-def]
    # Each child once per rule: adding the bands' rows would count a child whose budgets fall in two bands twice.
    per_rule = {rule: (eligible, redeemed) for month, rule, band, eligible, redeemed, _share in tables["uptake"].rows
                if month == reports.TOTAL and band == reports.ALL_AGES}
    rules = sorted(per_rule)
    per_category: dict[str, int] = defaultdict(int)
    for _month, category, _count, _redeemed, _reversed, net in tables["spending-by-category"].rows:
        per_category[category] += net
    categories = sorted(per_category)
    totals = [row for row in tables["budget-totals"].rows if row[0] != reports.TOTAL]
    one_year = len({row[0][:4] for row in totals}) == 1  # once: per row it took 35 s for 1900..2999's months
    return {
        "uptake": bar_chart("Bereik per regeling", rules, [
            Series("kinderen met tegoed", [per_rule[rule][0] for rule in rules]),
            Series("kinderen die besteedden", [per_rule[rule][1] for rule in rules])]),
        "categories": bar_chart("Netto besteed per categorie", categories, [
            Series("netto besteed", [per_category[category] for category in categories])], money=True),
        # The month alone where the figures lie within one year; with the year where they span more.
        "months": bar_chart("Toegekend, besteed en vervallen per maand", [
            row[0][5:] if one_year else row[0] for row in totals], [
            Series("toegekend", [row[1] for row in totals]), Series("besteed", [row[2] for row in totals]),
            Series("vervallen", [row[3] for row in totals])], money=True),
    }


@blueprint.get("/csv/<name>.csv")
def download(name: str):  # type: ignore[no-untyped-def]
    try:
        period = _period()
    except PeriodError:
        return Response("Periode niet begrepen: gebruik JJJJ, JJJJ-MM of VAN..TOT, met jaren van 1900 tot en met 2999.", status=400, mimetype="text/plain")
    with _runtime().db.read() as db_session:
        if name in ("sync-runs", "sync-rejected"):
            overview = reports.sync_overview(db_session)
            table = overview.last_runs if name == "sync-runs" else overview.rejected
        elif name in _TABLE_MAKERS:
            table = _TABLE_MAKERS[name](db_session, _runtime().vault, period)
        else:
            table = None
    if table is None:
        return Response("Deze tabel bestaat niet.", status=404, mimetype="text/plain")
    filename = f"{table.name}-{period.label.replace('..', '_')}.csv"
    return Response(table.csv_bytes(), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{filename}"'})
