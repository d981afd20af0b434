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

Numbers are also written in groups: a BSN as ``999 993 653`` or ``9999.93.653``, a
pass number as ``6064 3660 1234 5678``. Three to five groups of digits joined by
one and the same space, dot or dash count by their digits, as a run does (the
separators stay); an ISO date (``2026-12-01``) and an IPv4 address are left alone.
A space may be a no-break one (U+00A0, U+2007, U+2009, U+202F): a number copied
from a spreadsheet, a PDF or a web page is often grouped with one, and it looks
exactly like a space.

And a database's own error text quotes the values of the row it refused
(PostgreSQL: ``Key (pass_number)=(4821) already exists``, ``Failing row contains
(...)``), of any length: a test card's pass number may have four digits. Those
values are masked whole.
"""

from __future__ import annotations

import re

MASK_CHAR = "*"
_DIGIT_RUN = re.compile(r"(?<!\d)\d{8,}(?!\d)")
# What may stand between groups of digits: a space (also a no-break, figure, thin or narrow no-break one), a dot,
# a dash.
_SEPARATORS = " .\u00a0\u2007\u2009\u202f-"
_SEPARATOR = f"[{_SEPARATORS}]"
# A BSN in groups, whatever the separators: "999 993 653", "9999.93.653", "9999 93.653", "999-99-3653",
# "99 99 93 653". Whatever is glued to it ("0.999 993.6530"), unless the row of digit groups it sits in is an
# IPv4 address.
_GROUPED_BSN = re.compile(rf"\d{{2}}{_SEPARATOR}\d{{2}}{_SEPARATOR}\d{{2}}{_SEPARATOR}\d{{3}}"
                          rf"|\d{{4}}{_SEPARATOR}\d{{2}}{_SEPARATOR}\d{{3}}"
                          rf"|\d{{3}}{_SEPARATOR}\d{{3}}{_SEPARATOR}\d{{3}}"
                          rf"|\d{{3}}{_SEPARATOR}\d{{2}}{_SEPARATOR}\d{{4}}")
# The same shapes taking whole groups: no digit right before or after.
_WHOLE_GROUPED_BSN = re.compile(rf"(?<!\d)(?:{_GROUPED_BSN.pattern})(?!\d)")
# The row of digit groups around a match: digits, and single separators between digits.
# (Before a match that starts right after a separator, as one tried again a character on does, the row ends in
# that separator: the lookahead cannot see the match's digits past the end of the search.)
_ROW_BEFORE = re.compile(rf"(?:\d|{_SEPARATOR}(?=\d))*{_SEPARATOR}?$")
_ROW_AFTER = re.compile(rf"(?:\d|{_SEPARATOR}(?=\d))*")
# Longer numbers in three to five groups joined by the same separator (the backreference): "6064 3660 1234 5678",
# "6064-3660-1234-5678". Not across separators ("2026-08-01 2027" is a date and a year).
_DIGIT_GROUPS = re.compile(rf"(?<!\d)\d{{3,4}}({_SEPARATOR})\d{{2,4}}(?:\1\d{{2,4}}){{1,3}}(?!\d)")
# A real day: "9999-93-65" is a BSN written 4-2-3 with dashes, not a date.
_ISO_DATE = re.compile(r"\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])")
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")  # a real address: 999.993.653.12 is none
# PostgreSQL's DETAIL of a refused row: every "key (columns)=(values)" (an exclusion constraint's names two,
# "conflicts with existing key (...)=(...)"), and a failing row.
_KEY_VALUES = re.compile(r"([Kk]ey \((?:[^()]|\([^()]*\))*\)=\()(.*?)(\)(?= already exists| is not present"
                         r"| is still referenced| conflicts with|\.?$))", re.MULTILINE)
_FAILING_ROW = re.compile(r"(Failing row contains \().*(\))")
_VALUES_MASKED = "***"


def holds_a_long_number(text: str) -> bool:
    """Whether ``text`` holds a run of digits that ``redact`` masks: as long as a BSN (one whose leading zero a
    spreadsheet dropped included) or a pass number."""
    return _DIGIT_RUN.search(text) is not None


def pass_number_tail(pass_number: str) -> str:
    """The end of a pass number that may be shown: its last 4 digits when it has 10 or more (enough for a
    helpdesk or a shop to tell cards apart, not enough to use one), else a third of it, so that a short test
    card's number is never shown whole."""
    shown = 4 if len(pass_number) >= 10 else len(pass_number) // 3
    return pass_number[len(pass_number) - shown:]


def mask_pass_number(pass_number: str) -> str:
    """All but ``pass_number_tail`` hidden: ``6400000000000011`` -> ``************0011``, ``4821`` -> ``***1``."""
    tail = pass_number_tail(pass_number)
    return MASK_CHAR * (len(pass_number) - len(tail)) + tail


def redact(text: str) -> str:
    """``text`` with every possible BSN and pass number masked (see the module docstring)."""
    text = _KEY_VALUES.sub(lambda match: match.group(1) + _VALUES_MASKED + match.group(3), text)
    text = _FAILING_ROW.sub(lambda match: match.group(1) + _VALUES_MASKED + match.group(2), text)
    text = _mask_grouped_bsns(text)
    text = _DIGIT_GROUPS.sub(_mask_groups, text)
    return _DIGIT_RUN.sub(_mask_run, text)


# How far around a match its row of digit groups is read: longer than an IPv4 address (15 characters) and a date
# (10). Read whole, a long row of dates was read again for every candidate in it: 10 s for a line of 32 KB.
_ROW_WINDOW = 16


def _row_around(match: re.Match[str]) -> tuple[str, int, bool]:
    """The row of digit groups ``match`` sits in, within ``_ROW_WINDOW`` either side; where the match starts in
    it; and whether that is the whole row (not cut by the window)."""
    text = match.string
    window_start = max(0, match.start() - _ROW_WINDOW)
    before = _ROW_BEFORE.search(text, window_start, match.start()).group()
    after = _ROW_AFTER.match(text, match.end(), match.end() + _ROW_WINDOW).group()
    whole = (len(before) < match.start() - window_start or window_start == 0) and len(after) < _ROW_WINDOW
    before = before.lstrip(_SEPARATORS)
    return before + match.group() + after, len(before), whole


def _in_an_address(match: re.Match[str]) -> bool:
    """Whether the row of digit groups around ``match`` is an IPv4 address (which may hold a 3-3-3 shape). A row
    longer than the window is longer than any address."""
    row, _start, whole = _row_around(match)
    return whole and bool(_IPV4.fullmatch(row))


def _not_a_bsn(match: re.Match[str]) -> bool:
    """Whether a grouped-BSN shape is part of an IPv4 address, or takes digits of an ISO date ("2026-08-01 2027"
    holds the 2-2-2-3 shape "26-08-01 202"); its row read once for both."""
    row, start, whole = _row_around(match)
    if whole and _IPV4.fullmatch(row):
        return True
    end = start + len(match.group())
    return any(date.start() < end and start < date.end() for date in _ISO_DATE.finditer(row))


def _mask_grouped_bsns(text: str) -> str:
    """Every grouped BSN in ``text`` masked.

    First the shapes that take whole groups ("999 993 653" after "01-08-2026 " or "in 2026 "): glued to the
    digits before them, the search below started in the group before and left the BSN's last digits shown.
    Candidates overlap ("10.15.00 999.993.653"), so each is judged. Then the shapes glued to other digits
    ("0.999 993.6530"). A match left as it is (an address, digits of a date) is tried again one character on:
    ``re.sub`` went on after it, past the first digits of a BSN right behind it ("2026-08-01 9999 93.653")."""
    masked: list[tuple[int, int]] = []
    position = 0
    while (match := _WHOLE_GROUPED_BSN.search(text, position)) is not None:
        position = match.start() + 1
        if not _not_a_bsn(match):
            masked.append(match.span())
    if masked:
        characters = list(text)
        for start, end in masked:
            characters[start:end] = [MASK_CHAR if character.isdigit() else character
                                     for character in characters[start:end]]
        text = "".join(characters)
    parts, kept_until, position = [], 0, 0
    while (match := _GROUPED_BSN.search(text, position)) is not None:
        if _not_a_bsn(match):
            position = match.start() + 1
            continue
        parts.append(text[kept_until:match.start()])
        parts.append(re.sub(r"\d", MASK_CHAR, match.group()))
        kept_until = position = match.end()
    parts.append(text[kept_until:])
    return "".join(parts)


def _mask_run(match: re.Match[str]) -> str:
    digits = match.group()
    if len(digits) <= 9 or len(digits) >= 20:
        return MASK_CHAR * len(digits)
    return mask_pass_number(digits)


def _mask_groups(match: re.Match[str]) -> str:
    """Grouped digits masked as their digits would be as one run; the separators stay."""
    grouped = match.group()
    if _ISO_DATE.fullmatch(grouped) or _in_an_address(match):
        return grouped
    digits = sum(character.isdigit() for character in grouped)
    if digits < 8:
        return grouped
    keep = 4 if 10 <= digits <= 19 else 0
    masked, seen = [], 0
    for character in grouped:
        if character.isdigit():
            seen += 1
            masked.append(character if seen > digits - keep else MASK_CHAR)
        else:
            masked.append(character)
    return "".join(masked)
