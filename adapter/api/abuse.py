"""Abuse limits at the counter: balance checks per key, and far fewer look-ups of unusable passes.

The second limit stops enumeration: once a key has looked up too many passes
that do not exist (or are blocked...), every look-up by that key is refused for
the rest of the window, so even a hit teaches nothing.
"""

from __future__ import annotations

from typing import Any

from flask import current_app

from adapter.api.problems import problem
from adapter.counter import LookupGuard
from adapter.limits import Limiter, balance_checks_bucket, unusable_passes_bucket
from adapter.models import Merchant
from adapter.ratelimit import Verdict

WINDOW_SECONDS = 60
_TOO_MANY_UNUSABLE = "Te veel onbekende of ongeldige pasnummers met deze sleutel in korte tijd."


def limiter() -> Limiter:
    return current_app.extensions["adapter_limiter"]


def count_balance_check(merchant: Merchant) -> None:
    limit = _limits().balance_checks_per_minute
    # Leased (see adapter.limits): one shared write per block of checks, never looser than the limit.
    _refuse_unless(limiter().hit_leased(balance_checks_bucket(merchant.id), limit, WINDOW_SECONDS),
                   "Te veel saldochecks met deze sleutel in korte tijd.")


def unusable_passes_guard(merchant: Merchant) -> LookupGuard:
    """Refuse once the key looked up too many unusable passes, judged before the pass, in the look-up's own
    statement (one round trip less than a separate read). Look-ups in flight at the moment the limit is reached
    still finish: see ``adapter.limits`` for the bound."""
    pending = limiter().peek_pending(unusable_passes_bucket(merchant.id), _limits().unknown_pass_lookups_per_minute,
                                     WINDOW_SECONDS)

    def judge(value: Any) -> None:
        _refuse_unless(pending.verdict(value), _TOO_MANY_UNUSABLE)

    return LookupGuard(pending.column, pending.params, judge)


def count_unusable_pass(merchant: Merchant) -> None:
    limiter().hit(unusable_passes_bucket(merchant.id), _limits().unknown_pass_lookups_per_minute, WINDOW_SECONDS)


def _refuse_unless(verdict: Verdict, what: str) -> None:
    if not verdict.allowed:
        raise problem("rate_limited", f"{what} Wacht {verdict.retry_after_seconds} seconden en probeer het dan "
                                      "opnieuw. Controleer of het pasnummer goed is ingevoerd.",
                      headers={"Retry-After": str(verdict.retry_after_seconds)},
                      retry_after_seconds=verdict.retry_after_seconds)


def _limits():  # type: ignore[no-untyped-def]
    return current_app.extensions["adapter_runtime"].settings.api.rate_limits
