"""Amounts typed by a person, to integer cents, without ever passing through a float."""

from __future__ import annotations

import re

# [0-9], not \d: \d also matches other scripts' digits ('١٢'), which nobody at a Dutch till means.
# "12,-" (and "12,--") is how Dutch price tags write whole euros.
_AMOUNT = re.compile(r"(?:€\s*)?([0-9]{1,7})(?:[.,]([0-9]{1,2})|,-{1,2})?")
# "1.250,00" or "1,250.00": a thousands separator, which cannot be told from a decimal one in "1.250".
_GROUPED = re.compile(r"(?:€\s*)?[0-9]{1,3}(?:[.,][0-9]{3})+(?:[.,][0-9]{1,2})?")


class AmountError(ValueError):
    """The text is not an amount; the message (Dutch, for the counter) says how to type one."""


def parse_euros(text: str) -> int:
    """'12,50', '12.5', '€ 12', '12,-' -> cents. No thousands separators: '1.250' would be ambiguous."""
    typed = text.strip().replace(" ", "") if text else ""
    match = _AMOUNT.fullmatch(typed)
    if not match and _GROUPED.fullmatch(typed):
        raise AmountError("Typ het bedrag zonder punt of komma voor de duizendtallen, bijvoorbeeld 1250,00.")
    if not match:
        raise AmountError("Vul een bedrag in euro's in, bijvoorbeeld 12,50 of 12.50.")
    whole, fraction = match.group(1), (match.group(2) or "").ljust(2, "0")
    cents = int(whole) * 100 + int(fraction)
    if cents <= 0:
        raise AmountError("Het bedrag moet meer dan € 0,00 zijn.")
    return cents
