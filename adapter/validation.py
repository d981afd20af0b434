"""Checks every canonical record must pass before the sync engine sees it.

A failing record becomes a ``RejectedRecord`` whose reasons name the field and
the rule, never the value (it may be a BSN or a name).
"""

from __future__ import annotations

import dataclasses
from datetime import date
from operator import attrgetter

from adapter.records import CardholderRecord, RejectedRecord

EARLIEST_BIRTH_DATE = date(1900, 1, 1)
# Pass numbers seen in the field have 10-19 digits (PASS/GPASS, Ooievaarspas);
# shorter test cards exist, longer ones are an export error (two columns glued).
PASS_NUMBER_MIN_DIGITS = 4
PASS_NUMBER_MAX_DIGITS = 24
# The text a source sends besides the numbers checked below. Python holds a lone half of a UTF-16 pair (a JSON
# source can send "\ud83d" alone, a name cut off in the middle of an emoji) as a string like any other, but no
# UTF-8 encoder takes it: not the keyed hashes, not the encryption, not the database. Nor does PostgreSQL store
# a NUL character ("\u0000" in JSON, a zero byte in a file) in the ids it keeps as text. One such record failed
# the whole run; now that record alone is refused.
_TEXT_FIELDS = ("household_id", "cardholder_id", "first_names", "initials", "surname_prefix", "surname")
_texts = attrgetter(*_TEXT_FIELDS)
# The longest household or cardholder id the database keeps (the source_key columns, adapter.models; a test holds
# the two equal). PostgreSQL refuses a longer one, which failed the whole run there.
ID_MAX_LENGTH = 128


def check_record(record: CardholderRecord, today: date) -> list[str]:
    """The reasons ``record`` is invalid, or an empty list."""
    reasons: list[str] = []
    bsn = record.bsn
    bsn_valid = bsn is not None and _is_valid_bsn(bsn)
    if bsn is not None and not bsn_valid:
        reasons.append("bsn: fails the BSN 11-proof (9 digits, weighted sum divisible by 11)")
    pass_number = record.pass_number
    if not pass_number.isdigit() or not pass_number.isascii():
        reasons.append("pass_number: must contain digits only")
    elif not PASS_NUMBER_MIN_DIGITS <= len(pass_number) <= PASS_NUMBER_MAX_DIGITS:
        reasons.append(
            f"pass_number: must have {PASS_NUMBER_MIN_DIGITS} to {PASS_NUMBER_MAX_DIGITS} digits"
        )
    replaced = record.replaces_pass_number
    if replaced is not None and not (replaced.isascii() and replaced.isdigit()):
        reasons.append("replaces_pass_number: must contain digits only")
    if record.birth_date is not None:
        if record.birth_date > today:
            reasons.append("birth_date: lies in the future")
        elif record.birth_date < EARLIEST_BIRTH_DATE:
            reasons.append("birth_date: lies before 1900")
    if record.valid_from and record.valid_until and record.valid_until < record.valid_from:
        reasons.append("valid_until: lies before valid_from")
    for name, key in (("household_id", record.household_id), ("cardholder_id", record.cardholder_id)):
        if key is not None and len(key) > ID_MAX_LENGTH:
            reasons.append(f"{name}: is longer than {ID_MAX_LENGTH} characters; correct it in the source system, or "
                           "map a shorter id")
        elif key is not None and not key.strip():
            # An empty id is no id: two people sent with "" would be taken for one, the second's pass given to
            # the first.
            reasons.append(f"{name}: is empty or only spaces; correct it in the source system")
        elif key is not None and bsn is not None and bsn_valid and _is_the_bsn(key, bsn):
            # The ids are stored in plain text (the source_key columns), to find the row again the next night.
            reasons.append(f"{name}: is the cardholder's BSN, which is only ever stored encrypted; map the source's "
                           "own client or household number to it instead")
    texts = _texts(record)
    joined = f"{texts[0]}{texts[1]}{texts[2]}{texts[3]}{texts[4]}{texts[5]}"  # one look at all six
    if "\x00" in joined or not _encodes(joined):
        reasons += [f"{name}: {why}; correct it in the source system" for name, text in zip(_TEXT_FIELDS, texts)
                    if isinstance(text, str) and (why := _not_text(text))]
    return reasons


def _not_text(text: str) -> str | None:
    """Why ``text`` cannot be kept as text, or None."""
    if "\x00" in text:
        return "holds a NUL character, which is not text"
    if not _encodes(text):
        return "holds half of a UTF-16 character pair, which is not text"
    return None


def _encodes(text: str) -> bool:
    """Whether UTF-8 takes ``text`` (no lone surrogate). The error is dropped: it holds the whole text."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _is_the_bsn(key: str, bsn: str) -> bool:
    """Whether an id holds the record's own BSN: inside it, or as all of it less the leading zeros a spreadsheet
    drops. (Another person's BSN as an id cannot be told from a client number of nine digits.)"""
    if bsn in key:
        return True
    plain = key.strip()  # (a sync checks every line's two ids: the common case above stays one look)
    return len(plain) < 9 and plain.isascii() and plain.isdigit() and plain.lstrip("0") == bsn.lstrip("0")


def _is_valid_bsn(bsn: str) -> bool:
    """9 digits, not all zeros, 11-proof: 9*d1 + 8*d2 + ... + 2*d8 - d9 divisible by 11."""
    # isdigit() alone also accepts other scripts' digits and superscripts ("²"), which no BSN holds
    # (and which made stdnum's checksum raise mid-sync): ASCII digits only.
    if len(bsn) != 9 or not bsn.isascii() or not bsn.isdigit() or bsn == "000000000":
        return False
    # On the character codes: one call instead of nine int() calls, a million rows a night.
    # Each digit is its code minus 48; the weights sum to 43, hence the 48 * 43.
    d = bsn.encode("ascii")
    weighted = 9 * d[0] + 8 * d[1] + 7 * d[2] + 6 * d[3] + 5 * d[4] + 4 * d[5] + 3 * d[6] + 2 * d[7] - d[8]
    return (weighted - 48 * 43) % 11 == 0


def validate_record(record: CardholderRecord, today: date | None = None) -> CardholderRecord | RejectedRecord:
    """The record (BSN normalised to 9 digits) or a RejectedRecord with every reason."""
    record = _normalise_bsn(record)
    reasons = check_record(record, today or date.today())
    if reasons:
        number_valid = not any(reason.startswith("pass_number:") for reason in reasons)
        return RejectedRecord(record.source_key, tuple(reasons), pass_number=record.pass_number if number_valid
                              else None)
    return record


def _normalise_bsn(record: CardholderRecord) -> CardholderRecord:
    # A spreadsheet round-trip turns 012345678 into 12345678: pad before the 11-proof.
    bsn = record.bsn
    if bsn is not None and len(bsn) == 8 and bsn.isascii() and bsn.isdigit():
        return dataclasses.replace(record, bsn=bsn.zfill(9))
    return record
