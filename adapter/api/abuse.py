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
# The limit is judged before the key's record is read: a twin of the request may still be running, or the till's
# earlier attempt still committing. The till must not take the refusal for "unpaid" and start over under a new key
# (a second debit).
_RETRY_WITH_THE_SAME_KEY = (" Met dit verzoek is niets afgeschreven, maar een eerdere poging met dezelfde "
                            "Idempotency-Key kan wel gelukt zijn: stuur het na het wachten opnieuw met dezelfde "
                            "Idempotency-Key, dan krijgt u het antwoord van die poging en wordt er nooit twee keer "
                            "afgeschreven.")


def limiter() -> Limiter:
    return current_app.extensions["adapter_limiter"]


def count_balance_check(merchant: Merchant) -> None:
    limit = _limits().balance_checks_per_minute
    # Leased (see adapter.limits): one shared write per block of checks, never looser than the limit.
    _refuse_unless(limiter().hit_leased(balance_checks_bucket(merchant.id), limit, WINDOW_SECONDS),
                   "Te veel saldochecks met deze sleutel in korte tijd.")


def unusable_passes_guard(merchant: Merchant, *, idempotent: bool = False) -> LookupGuard:
    """Refuse once the key looked up too many unusable passes, judged before the pass, in the look-up's own
    statement (one round trip less than a separate read). Look-ups in flight at the moment the limit is reached
    still finish: see ``adapter.limits`` for the bound. ``idempotent``: the request carries an Idempotency-Key,
    and the refusal says how to retry it."""
    pending = limiter().peek_pending(unusable_passes_bucket(merchant.id), _limits().unknown_pass_lookups_per_minute,
                                     WINDOW_SECONDS)

    def judge(value: Any) -> None:
        _refuse_unless(pending.verdict(value), _TOO_MANY_UNUSABLE, after=_RETRY_WITH_THE_SAME_KEY if idempotent else "")

    return LookupGuard(pending.column, pending.params, judge)


def count_unusable_pass(merchant: Merchant) -> None:
    limiter().hit(unusable_passes_bucket(merchant.id), _limits().unknown_pass_lookups_per_minute, WINDOW_SECONDS)


def _refuse_unless(verdict: Verdict, what: str, *, after: str = "") -> None:
    if not verdict.allowed:
        raise problem("rate_limited", f"{what} Wacht {verdict.retry_after_seconds} seconden en probeer het dan "
                                      f"opnieuw. Controleer of het pasnummer goed is ingevoerd.{after}",
                      headers={"Retry-After": str(verdict.retry_after_seconds)},
                      retry_after_seconds=verdict.retry_after_seconds)


def _limits():  # type: ignore[no-untyped-def]
    return current_app.extensions["adapter_runtime"].settings.api.rate_limits
