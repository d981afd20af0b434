"""Turning core results into answers: UTC timestamps, cents, and Dutch words for the counter.

Rendering is a pure function of the stored outcome, so a replayed request gets the
same status and the same bytes as the first.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any

from adapter import ledger
from adapter.api.problems import Problem, problem
from adapter.counter import BalanceView
from adapter.reconciliation import ListedReversal, RedemptionLine, ReversalLine


def utc_text(moment: datetime | str) -> str:
    """ISO 8601 in UTC with a Z, to the millisecond."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def date_text(day: date | None) -> str | None:
    return day.isoformat() if day else None


def euros(cents: int) -> str:
    """Cents as a Dutch amount: 125050 -> '€ 1.250,50'."""
    whole, rest = divmod(cents, 100)
    return f"€ {whole:,}".replace(",", ".") + f",{rest:02d}"


def balance(view: BalanceView) -> dict[str, Any]:
    return {
        "pass": {"status": view.pass_status, "valid_until": date_text(view.valid_until)},
        "holder": {"name": view.holder_name},
        "budgets": [{"budget_id": budget.budget_id, "rule_name": budget.rule_name, "category": budget.category,
                     "available_cents": budget.available_cents, "expires_on": date_text(budget.expires_on)}
                    for budget in view.budgets],
        "as_of": utc_text(view.as_of),
    }


def redemption(outcome: ledger.RedemptionOutcome) -> dict[str, Any]:
    """The 201 body of a redemption; raises the problem for every other outcome."""
    if outcome.status == "redeemed":
        return {"redemption_id": outcome.redemption_id, "budget_id": outcome.budget_id,
                "requested_cents": outcome.requested_cents, "amount_cents": outcome.amount_cents,
                "remaining_to_pay_cents": outcome.remaining_to_pay_cents,
                "available_cents_after": outcome.available_cents, "created_at": utc_text(outcome.created_at or "")}
    raise redemption_problem(outcome)


def redemption_problem(outcome: ledger.RedemptionOutcome) -> Problem:
    if outcome.status == "insufficient_balance":
        return problem("insufficient_balance", insufficient_detail(outcome.available_cents, outcome.requested_cents),
                       available_cents=outcome.available_cents, requested_cents=outcome.requested_cents)
    if outcome.status == "idempotency_key_reused":
        return key_reused()
    # budget_not_open: the budget closed (period ended) between choosing it and redeeming.
    return budget_not_found()


def insufficient_detail(available_cents: int, requested_cents: int) -> str:
    if available_cents <= 0:
        return (f"Het tegoed is op: er is niets meer beschikbaar. Laat de ouder het hele bedrag van "
                f"{euros(requested_cents)} zelf betalen.")
    # Words for the employee, who never sees a field name: the till's developer has available_cents and the
    # document's allow_partial.
    return (f"Het tegoed is te laag: nog {euros(available_cents)} beschikbaar. Reken {euros(available_cents)} af "
            f"van het tegoed en laat de ouder het verschil van {euros(requested_cents - available_cents)} zelf "
            "betalen.")


def reversal(outcome: ledger.ReversalOutcome) -> dict[str, Any]:
    if outcome.status == "reversed":
        return {"reversal_id": outcome.reversal_id, "redemption_id": outcome.redemption_id,
                "amount_cents": outcome.amount_cents, "reversible_cents_after": outcome.reversible_cents,
                "returned_to_budget": outcome.returned_to_budget, "available_cents_after": outcome.available_cents,
                "created_at": utc_text(outcome.created_at or "")}
    if outcome.status == "redemption_not_found":
        raise redemption_not_found()
    if outcome.status == "reversal_exceeds_redemption":
        raise problem("reversal_exceeds_redemption", reversal_exceeds_detail(outcome.reversible_cents),
                      reversible_cents=outcome.reversible_cents)
    if outcome.status == "reversal_window_closed":
        raise problem("reversal_window_closed",
                      "Deze afschrijving is te lang geleden om terug te boeken. Neem contact op met de gemeente "
                      "om het bedrag te laten corrigeren.", reversible_cents=outcome.reversible_cents)
    raise key_reused()


def reversal_exceeds_detail(reversible_cents: int) -> str:
    if reversible_cents <= 0:
        # Typically a retry, under a new key, of a full reversal whose answer got lost: it was done.
        return ("Deze afschrijving is al helemaal teruggeboekt; er kan niets meer worden teruggeboekt. De "
                "eerdere terugboekingen staan bij de afschrijving in het overzicht van uw afschrijvingen.")
    return (f"Er kan van deze afschrijving nog {euros(reversible_cents)} worden teruggeboekt. Boek dat bedrag of "
            "minder terug, of boek alles terug wat er nog over is.")


def redemption_item(line: RedemptionLine) -> dict[str, Any]:
    return {"redemption_id": line.redemption_id, "created_at": utc_text(line.created_at),
            "amount_cents": line.amount_cents, "reversed_cents": line.reversed_cents, "budget_id": line.budget_id,
            "category": line.category, "pass_last4": line.pass_last4, "reference": line.reference,
            "reversals": [_reversal_item(reversal_line) for reversal_line in line.reversals]}


def listed_reversal(line: ListedReversal) -> dict[str, Any]:
    return {**_reversal_item(line.reversal), "redemption_id": line.redemption_id, "reference": line.reference}


def _reversal_item(line: ReversalLine) -> dict[str, Any]:
    return {"reversal_id": line.reversal_id, "amount_cents": line.amount_cents, "reason": line.reason,
            "returned_to_budget": line.returned_to_budget, "created_at": utc_text(line.created_at)}


# The same words for every unusable pass: unknown, blocked, replaced and expired look alike.
PASS_NOT_USABLE_DETAIL = ("Deze pas kan niet gebruikt worden. Controleer het pasnummer; klopt het, dan is de pas "
                          "niet (meer) geldig en kan de ouder contact opnemen met de gemeente.")


def pass_not_usable() -> Problem:
    return problem("pass_not_usable", PASS_NOT_USABLE_DETAIL)


def category_not_allowed() -> Problem:
    return problem("category_not_allowed", "Uw winkel mag dit tegoed niet afschrijven (andere categorie). Laat "
                                           "de ouder zelf betalen, of kies een tegoed dat uw winkel volgens de "
                                           "saldocheck mag gebruiken.")


def budget_not_found() -> Problem:
    return problem("budget_not_found", "Deze pas heeft geen open tegoed van deze soort. Doe een saldocheck "
                                       "om te zien welke tegoeden er zijn.")


def redemption_not_found() -> Problem:
    return problem("redemption_not_found", "Uw winkel heeft geen afschrijving met dit nummer. Controleer het "
                                           "nummer van de afschrijving op de bon of in het overzicht van uw "
                                           "afschrijvingen.")


def key_reused() -> Problem:
    return problem("idempotency_key_reused", "Deze Idempotency-Key is al gebruikt voor een ander verzoek. Gebruik "
                                             "voor elke nieuwe afrekening een nieuwe sleutel; gebruik dezelfde "
                                             "sleutel alleen om precies hetzelfde verzoek opnieuw te sturen.")


def in_progress() -> Problem:
    return problem("idempotency_request_in_progress", "Een verzoek met deze Idempotency-Key wordt nog verwerkt. "
                                                      "Wacht een seconde en stuur hetzelfde verzoek opnieuw.",
                   headers={"Retry-After": "1"})
