"""Masking of personal numbers in free text: log lines, exception messages, reports.

Text that leaves the process (a log line, a traceback, an error shown to an
operator) is passed through ``redact`` on its way out. It cannot recognise a
name or a birth date, so those must never be put in a message at all; what it
can do is mask every number that could be a BSN or a pass number:

- a run of exactly 8 or 9 digits could be a BSN (8 when a spreadsheet dropped
  the leading zero). It is masked whole, 11-proof or not: a mistyped BSN is
  still someone's BSN.
- a run of 10 to 19 digits could be a pass number. It keeps its last 4 digits,
  enough for a helpdesk to find the card, not enough to use it.
- a run of 20 or more digits is no identifier we know of, but it could hold
  one glued to another number, so it is masked whole.

"Run" means digits not preceded or followed by another digit, so a BSN inside
a longer number is covered by the rule for that number. Shorter numbers (ids,
amounts, years, ports) are left alone.
"""

from __future__ import annotations

import re

MASK_CHAR = "*"
_DIGIT_RUN = re.compile(r"(?<!\d)\d{8,}(?!\d)")
# A BSN is also written in groups: "9999.93.653" or "9999 93 653".
_GROUPED_BSN = re.compile(r"(?<!\d)\d{4}[ .]\d{2}[ .]\d{3}(?!\d)")


def mask_pass_number(pass_number: str) -> str:
    """All but the last 4 characters hidden: ``6400000000000011`` -> ``************0011``."""
    return MASK_CHAR * max(len(pass_number) - 4, 0) + pass_number[-4:]


def redact(text: str) -> str:
    """``text`` with every possible BSN and pass number masked (see the module docstring)."""
    text = _GROUPED_BSN.sub(lambda match: MASK_CHAR * len(match.group()), text)
    return _DIGIT_RUN.sub(_mask_run, text)


def _mask_run(match: re.Match[str]) -> str:
    digits = match.group()
    if len(digits) <= 9 or len(digits) >= 20:
        return MASK_CHAR * len(digits)
    return mask_pass_number(digits)
