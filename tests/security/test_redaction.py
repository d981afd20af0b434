"""The redaction rules, fuzzed: any text with an embedded BSN or pass number comes out masked."""

from __future__ import annotations

import re

import logging
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from adapter.logs import REMOVED, JsonFormatter, RedactionFilter, TextFormatter
from adapter.redaction import mask_pass_number, redact
from tests.fixture_personal_data import TEST_BSNS

bsns = st.sampled_from(TEST_BSNS) | st.from_regex(r"\A[0-9]{8,9}\Z")
pass_numbers = st.from_regex(r"\A[0-9]{10,19}\Z")
# Surrounding text of any kind, digits included: a BSN glued to other digits is part of a longer run.
surroundings = st.text(max_size=40)


def test_mask_pass_number_keeps_the_last_four_of_a_long_one_and_a_third_of_a_short_one():
    assert mask_pass_number("6400000000000011") == "************0011"
    assert mask_pass_number("6400000011") == "******0011"
    assert mask_pass_number("123456789") == "******789"
    assert mask_pass_number("4821") == "***1"
    assert mask_pass_number("") == ""


@given(pass_number=st.from_regex(r"\A[0-9]{1,19}\Z"))
def test_no_pass_number_is_shown_whole_or_beyond_its_last_four(pass_number):
    masked = mask_pass_number(pass_number)
    assert len(masked) == len(pass_number)
    shown = masked.lstrip("*")
    assert len(shown) <= min(4, len(pass_number) // 3 if len(pass_number) < 10 else 4)
    assert pass_number.endswith(shown)


def test_rules_by_run_length():
    assert redact("bsn 999993653.") == "bsn *********."
    assert redact("bsn 00009921 (8 digits)") == "bsn ******** (8 digits)"
    assert redact("pass 6400000000000011 blocked") == "pass ************0011 blocked"
    assert redact("bsn 9999.93.653 or 9999 93 653") == "bsn ****.**.*** or **** ** ***"
    assert redact("budget 17 of 2026: 15000 cents, merchant 1234567") == \
        "budget 17 of 2026: 15000 cents, merchant 1234567"
    assert redact("x" + "1" * 25) == "x" + "*" * 25


def test_numbers_written_in_groups_are_masked_by_their_digits_but_dates_and_addresses_are_not():
    assert redact("Jan (BSN 999 993 653, pas 6064 3660 1234 5678)") == "Jan (BSN *** *** ***, pas **** **** **** 5678)"
    assert redact("999-99-3653 and 999.993.653") == "***-**-**** and ***.***.***"
    assert redact("6064-3660-1234-5678") == "****-****-****-5678"
    # Mixed separators in a BSN, and numbers glued to a word.
    assert redact("BSN 9999 93.653") == "BSN **** **.***"
    assert redact("BSN 99 99 93 653, 99.99.93.653") == "BSN ** ** ** ***, **.**.**.***"
    # Right behind a date: a shape across the date's digits is left, and the BSN after it still found.
    assert redact("2026-08-01 9999 93.653") == "2026-08-01 **** **.***"
    assert redact("2026-08-01-999 993 653") == "2026-08-01-*** *** ***"
    assert redact("on 2026-08-01 999 993 653 2027") == "on 2026-08-01 *** *** *** 2027"
    assert redact("9999-93-653") == "****-**-***"
    # Right behind other digit groups (a Dutch date, a year, a time): the whole BSN, not its last digits.
    assert redact("01-08-2026 999 993 653") == "01-08-2026 *** *** ***"
    assert redact("01.08.2026 999.993.653") == "01.08.2026 ***.***.***"
    assert redact("in 2026 999 993 653") == "in 2026 *** *** ***"
    assert redact("pas 1234 999 993 653") == "pas 1234 *** *** ***"
    assert redact("2026-08-01 10.15.00 999.993.653") == "2026-08-01 **.**.** ***.***.***"
    assert redact("pas-6064-3660-1234-5678, nr.999.993.653, card.6064 3660 1234 5678") == \
        "pas-****-****-****-5678, nr.***.***.***, card.**** **** **** 5678"
    # One separator throughout: a period's two dates are two dates, not one number.
    assert redact("period 2026-08-01 2027-07-31 at 2026-12-01T15:52:00Z") == \
        "period 2026-08-01 2027-07-31 at 2026-12-01T15:52:00Z"
    assert redact("from 192.168.100.200, version 3.11.7, 1.234.567 cents, mask 255.255.255.0") == \
        "from 192.168.100.200, version 3.11.7, 1.234.567 cents, mask 255.255.255.0"
    # Glued to other digits, or shaped like an address that is none (no octet above 255).
    assert redact("0.999 993.6530 and 999.993.653.12") == "0.*** ***.***0 and ***.***.***.12"


def test_numbers_grouped_with_a_no_break_space_are_masked_like_with_a_space():
    # A number copied from a spreadsheet, a PDF or a web page is grouped with a no-break space (U+00A0) or a
    # narrow one (U+202F, Excel and LibreOffice in several locales), which looks exactly like a space.
    assert redact("pas 6064\u00a03660\u00a01234\u00a05678") == "pas ****\u00a0****\u00a0****\u00a05678"
    assert redact("BSN 999\u202f993\u202f653.") == "BSN ***\u202f***\u202f***."
    assert redact("BSN 9999\u00a093\u00a0653") == "BSN ****\u00a0**\u00a0***"
    assert redact("EUR 1\u00a0234,50 on 12\u00a0March") == "EUR 1\u00a0234,50 on 12\u00a0March"


def test_a_database_error_has_the_values_it_quotes_masked_whatever_their_length():
    assert redact('DETAIL:  Key (pass_number)=(4821) already exists.') == \
        'DETAIL:  Key (pass_number)=(***) already exists.'
    assert redact('Key (cardholder_id, rule_code, period_key)=(5, school, 2026) already exists') == \
        'Key (cardholder_id, rule_code, period_key)=(***) already exists'
    assert redact('DETAIL:  Key (cardholder_id)=(17) is not present in table "cardholders".') == \
        'DETAIL:  Key (cardholder_id)=(***) is not present in table "cardholders".'
    assert redact("DETAIL:  Failing row contains (1, 4821, Jan, null).") == "DETAIL:  Failing row contains (***)."
    # An exclusion constraint names two keys, and values may hold brackets of their own.
    assert redact("DETAIL:  Key (c, p)=(5, [2026-01-01,2026-12-31)) conflicts with existing key (c, p)=(4821, x).") \
        == "DETAIL:  Key (c, p)=(***) conflicts with existing key (c, p)=(***)."


@given(before=surroundings, bsn=bsns, after=surroundings)
def test_no_bsn_survives_whatever_surrounds_it(before, bsn, after):
    if bsn in before or bsn in after:
        return  # a copy outside the embedded one: not what this test is about
    assert bsn not in redact(before + bsn + after)


@given(before=surroundings, pass_number=pass_numbers, after=surroundings)
def test_no_full_pass_number_survives(before, pass_number, after):
    if pass_number in before or pass_number in after:
        return
    assert pass_number not in redact(before + pass_number + after)


@given(text=st.text(max_size=80))
def test_redaction_is_idempotent(text):
    once = redact(text)
    assert redact(once) == once


def _record(message: str, *args: object, exc_info=None, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("adapter.test", logging.ERROR, __file__, 1, message, args or None, exc_info)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


@settings(max_examples=60)
@given(before=surroundings, bsn=bsns, pass_number=pass_numbers, as_json=st.booleans())
def test_filter_masks_message_arguments_exceptions_and_extras(before, bsn, pass_number, as_json):
    if any(secret in before for secret in (bsn, pass_number)):
        return
    try:
        raise ValueError(f"{before}{bsn}", {"pass": pass_number})
    except ValueError:
        exc_info = sys.exc_info()
    record = _record("lookup %s for %r", bsn, [pass_number], exc_info=exc_info,
                     source_row=f"{before}{pass_number}", count=int(pass_number))
    RedactionFilter().filter(record)
    output = (JsonFormatter() if as_json else TextFormatter()).format(record)
    assert bsn not in output and pass_number not in output
    assert "ValueError" in output  # the traceback is kept, only masked


def test_personal_extra_fields_are_dropped_whatever_they_hold():
    record = _record("synced", surname="Jansen", birth_date="2015-05-05", first_names="Sanne", rows=12)
    RedactionFilter().filter(record)
    line = JsonFormatter().format(record)
    assert "Jansen" not in line and "2015-05-05" not in line and "Sanne" not in line
    assert f'"surname": "{REMOVED}"' in line and '"rows": 12' in line


def test_personal_extra_fields_are_dropped_under_the_source_systems_own_names_and_inside_containers():
    # The SOAP back offices (StUF) and the PASS/GPASS API name these fields in Dutch, a till or plug-in in
    # camelCase; and a field logged as a whole record (a dict, a list of them) holds the same keys one level down.
    record = _record("mapped", geslachtsnaam="Jansen", voornamen="Sanne", voorvoegsel="de", initialen="S.",
                     firstName="Sanne", lastName="Bakker", dateOfBirth="2015-05-05",
                     lid={"persoonsnummer": "P-01", "bsn": "999993653", "voornaam": "Sanne", "achternaam": "Jansen",
                          "geboortedatum": "2015-05-05", "passen": [{"pasnummer": "4821"}]},
                     rows=[{"surname": "Bakker", "line": 12}])
    RedactionFilter().filter(record)
    line = JsonFormatter().format(record)
    for value in ("Jansen", "Sanne", "Bakker", "2015-05-05", "S.", "999993653"):
        assert value not in line, value
    assert f'"geslachtsnaam": "{REMOVED}"' in line and f'"firstName": "{REMOVED}"' in line
    assert "P-01" in line and "'line': 12" in line  # what names no one stays, to tell the records apart


def test_formatter_redacts_even_without_the_filter():
    record = _record("bsn %s", "999993653")
    assert "999993653" not in JsonFormatter().format(record)
    assert "999993653" not in TextFormatter().format(_record("bsn %s", "999993653"))


def test_a_logged_database_error_keeps_no_short_pass_number():
    """A unique violation logged with its traceback (the scheduler's log.exception of a failed sync): PostgreSQL's
    DETAIL quotes the pass number, which for a test card has four digits, under any mask by length."""
    try:
        raise RuntimeError('duplicate key value violates unique constraint "passes_pass_number_key"\n'
                           "DETAIL:  Key (pass_number)=(4821) already exists.")
    except RuntimeError:
        exc_info = sys.exc_info()
    record = _record("sync %s failed", "gws", exc_info=exc_info)
    RedactionFilter().filter(record)
    output = JsonFormatter().format(record)
    assert "4821" not in output and "Key (pass_number)=(***) already exists" in output


# Digit groups right before a BSN, as a log line has them: a Dutch date, a time, a year, a line number ("01-08-2026
# 999 993 653"), ending in a separator (digits glued to the BSN make another, longer number).
digit_groups_before = st.builds(
    lambda groups, joint, last: joint.join(groups) + last,
    st.lists(st.text("0123456789", min_size=1, max_size=4), min_size=1, max_size=3),
    st.sampled_from(" .-:"), st.sampled_from(" .-\u00a0"))
# What may follow a BSN without making it part of a longer number.
not_glued_after = surroundings.filter(lambda text: not re.match(r"[ .\-\u00a0\u202f:]?\d", text))


@given(before=st.one_of(surroundings, digit_groups_before), bsn=st.sampled_from(TEST_BSNS), after=not_glued_after,
       shape=st.sampled_from([(3, 3, 3), (4, 2, 3), (3, 2, 4), (2, 2, 2, 3)]),
       separators=st.tuples(*[st.sampled_from(" .-\u00a0\u202f")] * 3))
def test_no_bsn_written_in_groups_survives_whatever_surrounds_it(before, bsn, after, shape, separators):
    """A BSN as people write it (999 993 653, 9999.93.653, 999-99-3653, 99 99 93 653, separators mixed), in
    any text: not whole, and not its last group either, which a match begun in the digit groups before it
    left shown ("01-08-2026 999 993 653" became "01-08-2*** *** *** 653")."""
    groups, start = [], 0
    for length in shape:
        groups.append(bsn[start:start + length])
        start += length
    grouped = groups[0] + "".join(separator + group for separator, group in zip(separators, groups[1:]))
    last_group = separators[len(groups) - 2] + groups[-1]
    if grouped in before or grouped in after or last_group in before or last_group in after:
        return
    masked = redact(before + grouped + after)
    assert grouped not in masked and last_group not in masked
