"""The counter page (Dutch): sign in with the shop's API key, scan a pass, redeem, reverse.

Pass numbers travel only in POST bodies, never in a URL. Each payment form
carries an idempotency key minted when the form was drawn, so a double click,
a resubmitted form or a reload pays once.
"""

from __future__ import annotations

import re
import secrets
import uuid
from datetime import timedelta
from typing import NamedTuple

from cryptography.fernet import InvalidToken
from flask import Blueprint, current_app, flash, g, redirect, render_template, request, session, url_for
from sqlalchemy import select
from werkzeug.exceptions import HTTPException

from adapter import counter, ledger, merchants, web_sessions
from adapter.crypto import KeyedHashes, request_fingerprint
from adapter.csvexport import euros_text
from adapter.models import Budget, Merchant, MerchantKey, Pass, Redemption, utcnow
from adapter.money import AmountError, parse_euros
from adapter.periods import local_midnight_utc
from adapter.redaction import pass_number_tail
from adapter.web import abuse, security

blueprint = Blueprint("counter", __name__, template_folder="templates")
# Our own stylesheet, served by us (the CSP allows nothing from elsewhere).
static_blueprint = Blueprint("web_static", __name__, static_folder="static", static_url_path="/web-static")

SESSION_KEY = security.COUNTER_SIGN_IN  # the sign-in's row id (adapter.web_sessions), not the key's
# The passes scanned in this browser, newest last: [token, pass number encrypted with the vault], so the cookie
# (signed, not encrypted) never carries a pass number. A list, not a dict: the session's JSON sorts a dict's keys.
LOOK_UPS_KEY = "counter_look_ups"
KEPT_LOOK_UPS = 8  # a few tabs or Back steps; a cookie holds some 4 kB
ASCII_NUMBER = re.compile(r"[0-9]{1,18}")  # fits a BIGINT; nothing but ASCII digits
SCANNED_NUMBER = re.compile(r"[0-9]{8,40}")  # too long for an amount; as long as the scan field takes

PASS_NOT_USABLE = ("Deze pas kan niet worden gebruikt (onbekend, geblokkeerd of verlopen). "
                   "Vraag de klant om een geldige stadspas.")
PAYMENT_REFUSED = ("Deze pas is niet bruikbaar of dit tegoed kan bij uw winkel niet worden gebruikt. Er is niets "
                   "afgeschreven. Scan de pas opnieuw en kies opnieuw een tegoed.")


def _runtime():  # type: ignore[no-untyped-def]
    return current_app.extensions["adapter_runtime"]


def _signed_in_merchant() -> Merchant | None:
    """The merchant of the key this session signed in with, while that key is still valid."""
    session_id = session.get(SESSION_KEY)
    if session_id is None:
        return None
    with _runtime().db.read() as db_session:
        key_id = web_sessions.subject_of(db_session, session_id, web_sessions.COUNTER)
        key = db_session.get(MerchantKey, key_id) if key_id is not None else None
        if key is None or not key.works_at(utcnow()) or not key.merchant.active:
            return None
        return key.merchant


@blueprint.before_request
def _require_sign_in():  # type: ignore[no-untyped-def]
    if request.endpoint in ("counter.sign_in", "counter.sign_in_form"):
        return None
    merchant = _signed_in_merchant()
    if merchant is None:
        if session.pop(SESSION_KEY, None) is not None:
            # A sign-in that ended (its time was up, or the key was revoked) while a form was on the screen: the
            # cashier must know that nothing was paid, not just see the sign-in page.
            flash("U bent afgemeld: uw aanmelding is verlopen of de sleutel is ingetrokken. Er is niets "
                  "afgeschreven; meld u opnieuw aan en scan de pas opnieuw.", "error")
        return redirect(url_for("counter.sign_in_form"), code=303)
    g.merchant = merchant
    return None


# ---------------------------------------------------------------- sign in / out

@blueprint.get("/aanmelden")
def sign_in_form():  # type: ignore[no-untyped-def]
    return render_template("counter/sign_in.html")


@blueprint.post("/aanmelden")
def sign_in():  # type: ignore[no-untyped-def]
    runtime = _runtime()
    limit = runtime.settings.api.rate_limits.failed_sign_ins_per_minute
    bucket = f"web-sign-in:{security.client_ip()}"
    if security.sign_in_blocked(bucket, limit):
        return render_template("counter/sign_in.html",
                               error="Te veel mislukte pogingen. Wacht een minuut en probeer het opnieuw."), 429
    with runtime.db.read() as db_session:
        merchant = merchants.authenticate(db_session, request.form.get("api_key", "").strip())
        key_id = None
        if merchant is not None:
            key_id = db_session.execute(select(MerchantKey.id).where(
                MerchantKey.key_hash == merchants.hash_key(request.form["api_key"].strip()))).scalar_one()
    if merchant is None:
        security.count_failed_sign_in(bucket, limit)
        return render_template("counter/sign_in.html",
                               error="Deze sleutel is onbekend of verlopen. Controleer de sleutel of vraag de "
                                     "gemeente om een nieuwe."), 401
    with runtime.db.write() as db_session:
        security.end_sign_ins(db_session)  # any earlier one in this cookie
        session_id = web_sessions.start(db_session, web_sessions.COUNTER, key_id)
    security.start_session(**{SESSION_KEY: session_id})
    return redirect(url_for("counter.scan_form"), code=303)


@blueprint.post("/afmelden")
def sign_out():  # type: ignore[no-untyped-def]
    # On the server too, for every sign-in the cookie holds: a copy of this cookie lets nobody in after this.
    with _runtime().db.write() as db_session:
        security.end_sign_ins(db_session)
    session.clear()
    return redirect(url_for("counter.sign_in_form"), code=303)


# ---------------------------------------------------------------- scan and balance

@blueprint.get("/")
def scan_form():  # type: ignore[no-untyped-def]
    return _scan_page()


def _scan_page(error: str | None = None, status: int = 200):  # type: ignore[no-untyped-def]
    return render_template("counter/scan.html", merchant=g.merchant, error=error,
                           recent=_todays_redemptions(g.merchant.id)), status


@blueprint.post("/pas")
def show_balance():  # type: ignore[no-untyped-def]
    """Answered with a redirect to the balance page, never with the page itself: a page that is a POST's answer
    cannot be gone Back to after paying (the browser offers to send the scan form again) nor reloaded without
    that question. The pass number stays out of the address: the address names a look-up of this session."""
    return _to_balance_page(_pass_number(request.form))


def _to_balance_page(pass_number: str, *, budget_id: int | None = None, error: str | None = None,
                     short_of_cents: int | None = None):  # type: ignore[no-untyped-def]
    """A redirect (303) to a fresh look-up of ``pass_number``: the focus on ``budget_id``, ``error`` shown above
    it, and with ``short_of_cents`` the offer to pay part of that amount from the budget.

    Every pass number that comes in here counts one balance check against the shop's limit, unless this session
    looked it up already: the look-ups that follow a scan (the redirect, Back, a reload, a payment refused for
    too little balance) are one customer's, and counting each spent two or three of the shop's checks on them.
    Counted only at the scan, a payment form sent with any pass number in its hidden field and a bad amount
    showed that pass's balance uncounted, as often as wanted."""
    looked_up = _look_ups()
    if not any(_holds(encrypted, pass_number) for _token, encrypted in looked_up):
        abuse.count_balance_check(g.merchant.id)
    token = secrets.token_urlsafe(16)
    kept = [[kept_token, encrypted] for kept_token, encrypted in looked_up]
    session[LOOK_UPS_KEY] = [*kept[-(KEPT_LOOK_UPS - 1):], [token, _runtime().vault.encrypt(pass_number)]]
    if error:
        flash(error, "error")
    return redirect(url_for("counter.balance", token=token, tegoed=budget_id, tekort=short_of_cents), code=303)


def _holds(encrypted: str, pass_number: str) -> bool:
    try:
        return _runtime().vault.decrypt(encrypted) == pass_number
    except InvalidToken:  # encrypted under a key that was taken away since
        return False


def _look_ups() -> list[tuple[str, str]]:
    """This session's scans, oldest first, as (token, encrypted pass number); anything else in the cookie is
    passed over (a cookie from an older version, or one edited by hand and signed all the same)."""
    return [(entry[0], entry[1]) for entry in session.get(LOOK_UPS_KEY, [])
            if isinstance(entry, list) and len(entry) == 2 and all(isinstance(part, str) for part in entry)]


@blueprint.get("/pas/<token>")
def balance(token: str):  # type: ignore[no-untyped-def]
    """The balance of a pass scanned in this session, looked up afresh: going Back to it after paying, or
    reloading it, shows what is left now, with new payment forms."""
    # timing-safe: the tokens compared are this browser's own, from its signed cookie.
    encrypted = next((kept for kept_token, kept in _look_ups() if kept_token == token), None)
    try:
        pass_number = _runtime().vault.decrypt(encrypted) if encrypted is not None else None
    except InvalidToken:  # encrypted under a key that was taken away since
        pass_number = None
    if pass_number is None:
        return _scan_page("Deze pagina is verlopen. Er is niets afgeschreven. Scan de pas opnieuw.", 404)
    return _counted_look_up(pass_number, budget_id=_ascii_number(request.args.get("tegoed", "")),
                            short_of_cents=_ascii_number(request.args.get("tekort", "")))


def _counted_look_up(pass_number: str, *, budget_id: int | None = None,
                     short_of_cents: int | None = None):  # type: ignore[no-untyped-def]
    """The balance page, looked up as every form that takes a pass number must: the unusable-pass limit first
    (its balance check was counted when the look-up was made, ``_to_balance_page``), then the pass.

    An unusable pass is counted and answered with the same page whatever made it unusable.
    """
    runtime = _runtime()
    abuse.refuse_when_too_many_unusable(g.merchant.id)
    try:
        with runtime.db.read() as db_session:
            view = counter.check_balance(db_session, runtime.vault, g.merchant, pass_number,
                                         expiry_grace_days=runtime.expiry_grace_days)
    except counter.PassNotUsable:
        abuse.count_unusable_pass(g.merchant.id)
        return _scan_page(PASS_NOT_USABLE)
    shown = next((budget for budget in view.budgets if budget.budget_id == budget_id), None)
    if shown is not None and short_of_cents is not None and shown.available_cents < short_of_cents:
        return _shortfall_page(pass_number, shown, short_of_cents)
    return _balance_page(view, pass_number, error_budget_id=budget_id)


class _Shortfall(NamedTuple):
    requested_cents: int
    available_cents: int
    remaining_to_pay_cents: int


def _shortfall_page(pass_number: str, budget: counter.BudgetView, requested_cents: int):  # type: ignore[no-untyped-def]
    """Too little on the budget for the amount typed, as it stands now: the offer to pay what is there."""
    outcome = _Shortfall(requested_cents, budget.available_cents, requested_cents - budget.available_cents)
    return render_template("counter/insufficient.html", outcome=outcome, pass_number=pass_number,
                           budget_id=budget.budget_id, amount_text=euros_text(requested_cents),
                           partial_key=str(uuid.uuid4()))


def _balance_page(view: counter.BalanceView, pass_number: str,
                  error_budget_id: int | None = None):  # type: ignore[no-untyped-def]
    forms = {budget.budget_id: str(uuid.uuid4()) for budget in view.budgets}
    return render_template("counter/balance.html", view=view, pass_number=pass_number, keys=forms,
                           error_budget_id=error_budget_id, masked=_mask(pass_number))


# ---------------------------------------------------------------- redeem

@blueprint.post("/afrekenen")
def redeem():  # type: ignore[no-untyped-def]
    runtime = _runtime()
    form = request.form
    pass_number = _pass_number(form)
    budget_id = _ascii_number(form.get("budget_id", ""))
    if budget_id is None:
        return _scan_page("Dit formulier klopt niet (het tegoed is onleesbaar). Er is niets afgeschreven. "
                          "Scan de pas opnieuw en kies opnieuw een tegoed.", 400)
    if _is_a_scan(form.get("amount", "")):
        # The next customer's pass was scanned while this balance showed: the scanner typed into the amount field,
        # which has focus. No amount has that many digits; show that pass, as the scan field would have.
        return _to_balance_page(counter.as_scanned(form["amount"]))
    idempotency_key = form.get("idempotency_key", "")[:128] or None
    allow_partial = form.get("allow_partial") == "1"
    try:
        amount_cents = parse_euros(form.get("amount", ""))
        if amount_cents > runtime.settings.api.max_amount_cents:
            raise AmountError(f"Eén betaling mag hoogstens {_euros(runtime.settings.api.max_amount_cents)} zijn.")
    except AmountError as exc:
        return _to_balance_page(pass_number, budget_id=budget_id, error=f"{exc} Er is niets afgeschreven.")
    fingerprint = _payment_fingerprint(runtime.vault.hashes, pass_number, budget_id, amount_cents, allow_partial)
    try:
        abuse.refuse_when_too_many_unusable(g.merchant.id)
    except HTTPException:
        # The limit is judged before the form's key is read. A form paid before and sent again (a reload after a
        # lost answer) must show its receipt, as the API replays it, not a page saying nothing was debited.
        paid = ledger.stored_redemption(runtime.db, g.merchant.id, idempotency_key, fingerprint) \
            if idempotency_key is not None else None
        if paid is None or not paid.succeeded:
            raise
        return _to_receipt(paid)
    # Every answer is a redirect (see show_balance): Back after the payment that follows must not land on this
    # form's answer, where Chromium offers to send the form again.
    try:
        outcome = counter.redeem(
            runtime.db, g.merchant, pass_number, amount_cents, budget_id=budget_id, allow_partial=allow_partial,
            idempotency_key=idempotency_key, fingerprint=fingerprint,
            expiry_grace_days=runtime.expiry_grace_days, in_progress_wait_ms=runtime.settings.api.idempotency_wait_ms)
    except (counter.PassNotUsable, counter.NoSuchBudget, counter.CategoryNotAllowed):
        # One page and one count for all three: a wrong budget on a real pass must look like an unknown pass. So
        # to the scan page, not to this pass's balance.
        abuse.count_unusable_pass(g.merchant.id)
        return _to_scan_page(PAYMENT_REFUSED)
    except ledger.IdempotencyInProgress:
        return _to_scan_page("Deze betaling wordt nog verwerkt. Wacht een paar seconden en kijk onder 'Betalingen "
                             "vandaag' of ze gelukt is, voordat u opnieuw afrekent.")
    if outcome.succeeded:
        return _to_receipt(outcome)
    # A payment that was not made: the balance page as it is now.
    if outcome.status == "insufficient_balance":
        return _to_balance_page(pass_number, budget_id=budget_id, short_of_cents=amount_cents)
    if outcome.status == "idempotency_key_reused":
        return _to_balance_page(pass_number, budget_id=budget_id, error=(
            "Dit formulier is al voor een ander bedrag gebruikt. Er is niets afgeschreven; vul het bedrag opnieuw in."))
    return _to_balance_page(pass_number, budget_id=budget_id, error=(
        "Dit tegoed is niet meer geldig. Er is niets afgeschreven. Kies een ander tegoed of laat de klant zelf "
        "betalen."))


def _to_receipt(outcome: ledger.RedemptionOutcome):  # type: ignore[no-untyped-def]
    return redirect(url_for("counter.receipt", redemption_id=outcome.redemption_id,
                            zelf=outcome.remaining_to_pay_cents or None), code=303)


def _to_scan_page(message: str, category: str = "error"):  # type: ignore[no-untyped-def]
    flash(message, category)
    return redirect(url_for("counter.scan_form"), code=303)


def _payment_fingerprint(hashes: KeyedHashes, pass_number: str, budget_id: int, amount_cents: int,
                         allow_partial: bool) -> str:
    """What makes two submits of a payment form the same payment, whatever way the amount was typed.

    With it, a resubmit is answered from the stored outcome before the pass is looked up
    again: a form charged before the pass was blocked still shows its receipt. Keyed, as the API's
    (``adapter.api.parsing.fingerprint``): it covers the full pass number and is stored.
    """
    return request_fingerprint(hashes, "POST /counter/afrekenen", {
        "pass_number": pass_number, "budget_id": budget_id, "amount_cents": amount_cents, "allow_partial": allow_partial})


@blueprint.get("/bon/<redemption_id>")
def receipt(redemption_id: str):  # type: ignore[no-untyped-def]
    with _runtime().db.read() as db_session:
        row = db_session.execute(
            select(Redemption, Budget.rule_name, Budget.balance_cents, Pass.pass_number)
            .join(Budget, Budget.id == Redemption.budget_id).join(Pass, Pass.id == Redemption.pass_id)
            .where(Redemption.id == redemption_id, Redemption.merchant_id == g.merchant.id)
        ).first()
    if row is None:
        return _scan_page("Deze betaling is niet gevonden bij uw winkel.", 404)
    redemption, rule_name, balance_cents, pass_number = row
    pays_self = request.args.get("zelf", "")
    return render_template("counter/receipt.html", redemption=redemption, rule_name=rule_name,
                           balance_cents=balance_cents, masked=_mask(pass_number),
                           pays_self_cents=_ascii_number(pays_self) or 0)


# ---------------------------------------------------------------- reverse

@blueprint.post("/terugboeken")
def reverse():  # type: ignore[no-untyped-def]
    runtime = _runtime()
    reason = request.form.get("reason", "").strip()[:500]
    redemption_id = request.form.get("redemption_id", "")[:36]
    if not reason:
        return _scan_page("Vul een reden in om terug te boeken. Er is niets teruggeboekt.", 422)
    amount_text = request.form.get("amount", "").strip()
    try:
        amount_cents = parse_euros(amount_text) if amount_text else None  # empty: all that is left of it
    except AmountError as exc:
        return _to_scan_page(f"{exc} Er is niets teruggeboekt.")
    try:
        outcome = ledger.reverse(runtime.db, ledger.ReversalRequest(
            merchant_id=g.merchant.id, redemption_id=redemption_id, reason=reason, actor=f"merchant:{g.merchant.id}",
            amount_cents=amount_cents,
            window=timedelta(days=runtime.settings.api.reversal_window_days),
            idempotency_key=request.form.get("idempotency_key", "")[:128] or None,
            today=counter.counter_today(), expiry_grace_days=runtime.expiry_grace_days),
            in_progress_wait_ms=runtime.settings.api.idempotency_wait_ms)
    except ledger.IdempotencyInProgress:
        # The same form sent twice (a double click): the first is still being written.
        return _to_scan_page("Deze terugboeking wordt nog verwerkt. Wacht een paar seconden en kijk onder 'Betalingen "
                             "vandaag' of ze gelukt is, voordat u opnieuw terugboekt.")
    messages = {
        "reversed": f"Teruggeboekt: {_euros(outcome.amount_cents)}. Het bedrag staat weer op het tegoed."
        if outcome.returned_to_budget else
        f"Teruggeboekt: {_euros(outcome.amount_cents)}. Het tegoed was verlopen; het geld gaat terug naar de gemeente.",
        "redemption_not_found": "Deze betaling is niet gevonden bij uw winkel. Er is niets teruggeboekt.",
        "reversal_exceeds_redemption": _reversal_exceeds_message(outcome.reversible_cents),
        "reversal_window_closed": "Deze betaling is te oud om terug te boeken. Neem contact op met de gemeente.",
        "idempotency_key_reused": "Dit formulier is al gebruikt. Vernieuw de pagina en probeer opnieuw.",
    }
    return _to_scan_page(messages[outcome.status], "success" if outcome.succeeded else "error")


def _reversal_exceeds_message(reversible_cents: int) -> str:
    """As the API says it (adapter.api.render.reversal_exceeds_detail): nothing left is a reversal already done,
    at another till or in another tab, not a request for too much."""
    if reversible_cents <= 0:
        return "Deze betaling is al helemaal teruggeboekt. Er is niets meer teruggeboekt."
    return (f"Van deze betaling kan nog {_euros(reversible_cents)} terug. Er is niets teruggeboekt; vul dat bedrag "
            "of minder in, of laat het bedrag leeg om alles terug te boeken.")


def _todays_redemptions(merchant_id: int) -> list[dict]:
    since = local_midnight_utc(counter.counter_today())
    with _runtime().db.read() as db_session:
        rows = db_session.execute(
            select(Redemption, Budget.rule_name, Pass.pass_number)
            .join(Budget, Budget.id == Redemption.budget_id).join(Pass, Pass.id == Redemption.pass_id)
            .where(Redemption.merchant_id == merchant_id, Redemption.created_at >= since)
            .order_by(Redemption.created_at.desc()).limit(50)
        ).all()
    return [{"redemption": redemption, "rule_name": rule_name, "masked": _mask(pass_number),
             "reversible_cents": redemption.amount_cents - redemption.reversed_cents, "key": str(uuid.uuid4())}
            for redemption, rule_name, pass_number in rows]


def _pass_number(form) -> str:  # type: ignore[no-untyped-def]
    return counter.as_scanned(form.get("pass_number", ""))


def _is_a_scan(amount_text: str) -> bool:
    """Whether an amount field holds a pass number: only digits (and the spaces a scanner may type between groups),
    more of them than any amount parse_euros takes (7 whole euros' digits)."""
    return SCANNED_NUMBER.fullmatch(counter.as_scanned(amount_text)) is not None


def _ascii_number(text: str) -> int | None:
    """A whole number typed in ASCII digits, or None. str.isdigit() would let '²' or '١' through to int()."""
    return int(text) if ASCII_NUMBER.fullmatch(text) else None


def _mask(pass_number: str) -> str:
    return "…" + pass_number_tail(pass_number) if pass_number else ""


def _euros(cents: int) -> str:
    return euros_text(cents, symbol=True)
