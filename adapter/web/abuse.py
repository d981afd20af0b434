"""Abuse limits on the counter page: the API's buckets, order and limiter (see adapter/api/abuse.py).

Every form that takes a pass number first counts against, then checks, the shop's
limits, before the pass is looked up: once a shop has tried too many unusable
passes, every look-up is refused for the rest of the window, a real pass too, so
even a hit teaches an enumerator nothing. The limiter is the app's
(``adapter.limits``): Redis when configured, else the database.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import Response, abort, current_app, render_template

from adapter.limits import Limiter, balance_checks_bucket, unusable_passes_bucket
from adapter.periods import LOCAL_ZONE
from adapter.ratelimit import Verdict

WINDOW_SECONDS = 60


def limiter() -> Limiter:
    return current_app.extensions["adapter_limiter"]


def count_balance_check(merchant_id: int) -> None:
    """Count a look-up that may show a balance; a Dutch 429 page when the shop is over its limit."""
    _refuse_unless(limiter().hit(balance_checks_bucket(merchant_id), _limits().balance_checks_per_minute,
                                 WINDOW_SECONDS),
                   "Te veel saldo-opvragingen door deze winkel in korte tijd.")


def refuse_when_too_many_unusable(merchant_id: int) -> None:
    """A Dutch 429 page, before any look-up, once the shop tried too many unusable passes this window."""
    _refuse_unless(limiter().peek(unusable_passes_bucket(merchant_id), _limits().unknown_pass_lookups_per_minute,
                                  WINDOW_SECONDS),
                   "Te veel onbekende of ongeldige pasnummers door deze winkel in korte tijd.")


def count_unusable_pass(merchant_id: int) -> None:
    limiter().hit(unusable_passes_bucket(merchant_id), _limits().unknown_pass_lookups_per_minute, WINDOW_SECONDS)


def _refuse_unless(verdict: Verdict, what: str) -> None:
    if verdict.allowed:
        return
    seconds = verdict.retry_after_seconds
    retry_at = (datetime.now(LOCAL_ZONE) + timedelta(seconds=seconds)).strftime("%H:%M:%S")
    page = render_template("counter/too_many.html", what=what, seconds=seconds, retry_at=retry_at)
    abort(Response(page, status=429, headers={"Retry-After": str(seconds)}))


def _limits():  # type: ignore[no-untyped-def]
    return current_app.extensions["adapter_runtime"].settings.api.rate_limits
