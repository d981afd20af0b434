"""The Dutch pages a cashier or an officer sees when a web page cannot be served.

The API answers these cases with problem documents (``adapter.api.problems``), which a browser would show as
JSON: a cashier at a busy counter needs a page in Dutch that says whether anything was paid and what to do.
"""

from __future__ import annotations

from flask import Response, current_app, make_response, render_template, request
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from adapter.limits import UNAVAILABLE_RETRY_AFTER_SECONDS, LimitsUnavailable
from adapter.web.security import add_security_headers

WEB_PREFIXES = ("/counter", "/admin")
TRY_AGAIN = "Probeer het over een minuut opnieuw; blijft het misgaan, neem dan contact op met de helpdesk van de gemeente."
# The forms that move money. Their commit may have gone through before the fault: sending that same form again pays
# once, but a cashier who scans the pass again gets a fresh form (a new idempotency key), which pays a second time.
MONEY_FORMS = ("counter.redeem", "counter.reverse")
LOOK_FIRST = ("Misschien is de betaling of terugboeking toch verwerkt. Kijk over een minuut op de kassapagina onder "
              "'Betalingen vandaag' of ze erbij staat, voordat u opnieuw afrekent of terugboekt; blijft het misgaan, "
              "neem dan contact op met de helpdesk van de gemeente.")


def page_for_error(error: Exception) -> Response | None:
    """The page for an error raised while serving a web page (asked by ``adapter.api.problems`` before it writes a
    problem document); None for the API's own addresses."""
    if not request.path.startswith(WEB_PREFIXES):
        return None
    if isinstance(error, LimitsUnavailable):
        return page_for_limits_unavailable(error)
    if isinstance(error, (OperationalError, InterfaceError)):
        return page_for_database_unavailable(error)
    return page_for_unexpected_error(error)


def page_for_limits_unavailable(error: LimitsUnavailable) -> Response:
    """Redis, where sign-ins and look-ups are counted, does not answer: nothing was looked up or paid by this
    request. But the limits are judged before a payment form's key is: the same form sent again after its payment
    went through is refused here too, so after a payment form the page says to look first."""
    current_app.logger.warning("%s", error)
    return _page(503, "Even niet beschikbaar", f"De kassadienst kan dit nu niet controleren. {_next_step()}",
                 nothing_done=request.endpoint not in MONEY_FORMS, retry_after=True)


def page_for_database_unavailable(error: DBAPIError) -> Response:
    """The database restarts or the connection broke. A payment whose commit was under way may have gone through,
    so the page does not say nothing was paid: it says to look before paying again."""
    current_app.logger.warning("database unavailable during a page (%s)", type(error.orig or error).__name__)
    return _page(503, "Even niet beschikbaar", f"De kassadienst kan de database even niet bereiken. {_next_step()}",
                 retry_after=True)


def page_for_unexpected_error(error: Exception) -> Response:
    """A fault of ours."""
    # The exception text may hold personal data: the log's redaction sees it, the page never shows it.
    current_app.logger.exception("unhandled error in a page")
    return _page(500, "Er ging iets mis", f"Er ging bij ons iets mis. {_next_step()}")


def _next_step() -> str:
    return LOOK_FIRST if request.endpoint in MONEY_FORMS else TRY_AGAIN


def _page(status: int, heading: str, what: str, *, nothing_done: bool = False, retry_after: bool = False) -> Response:
    response = make_response(render_template("not_here.html", heading=heading, what=what,
                                             nothing_done=nothing_done), status)
    if retry_after:
        response.headers["Retry-After"] = str(UNAVAILABLE_RETRY_AFTER_SECONDS)
    return add_security_headers(response)
