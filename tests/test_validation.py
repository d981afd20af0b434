from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st
from stdnum.nl import bsn as bsn_number

from adapter.models import Cardholder, Household
from adapter.records import CardholderRecord, RejectedRecord
from adapter.validation import ID_MAX_LENGTH, validate_record

TODAY = date(2026, 11, 29)


def make(**changes):
    values = dict(source_key="line 2", household_id="h", cardholder_id="c",
                  pass_number="6064366011000001", bsn="999993653", birth_date=date(2014, 11, 2),
                  valid_from=date(2026, 8, 1), valid_until=date(2027, 7, 31))
    values.update(changes)
    return CardholderRecord(**values)


def test_a_valid_record_passes_unchanged():
    assert validate_record(make(), TODAY) == make()


@pytest.mark.parametrize("bsn", ["999993653", "999993847", "999992077", "999993483", "999990482",
                                 "000009921", "999995017", "999990408", "999994669", "999992806",
                                 "999993926"])
def test_published_test_bsns_pass(bsn):
    assert isinstance(validate_record(make(bsn=bsn), TODAY), CardholderRecord)


def test_an_eight_digit_bsn_is_padded_before_the_11_proof():
    assert validate_record(make(bsn="00009921"), TODAY).bsn == "000009921"


@pytest.mark.parametrize("changes, reason", [
    ({"bsn": "999993654"}, "bsn: fails the BSN 11-proof"),
    ({"bsn": "000000000"}, "bsn: fails the BSN 11-proof"),
    ({"bsn": "12345"}, "bsn: fails the BSN 11-proof"),
    ({"pass_number": "6064-3660"}, "pass_number: must contain digits only"),
    ({"pass_number": "123"}, "pass_number: must have 4 to 24 digits"),
    ({"pass_number": "1" * 25}, "pass_number: must have 4 to 24 digits"),
    ({"pass_number": "١٢٣٤٥"}, "pass_number: must contain digits only"),
    ({"birth_date": date(2026, 11, 30)}, "birth_date: lies in the future"),
    ({"birth_date": date(1899, 12, 31)}, "birth_date: lies before 1900"),
    ({"valid_until": date(2026, 7, 31)}, "valid_until: lies before valid_from"),
])
def test_each_rule_rejects_naming_field_and_rule_not_value(changes, reason):
    result = validate_record(make(**changes), TODAY)
    assert isinstance(result, RejectedRecord)
    assert result.source_key == "line 2"
    assert len(result.reasons) == 1 and result.reasons[0].startswith(reason)
    for value in changes.values():
        assert str(value) not in result.reason


def test_all_reasons_are_reported_together():
    result = validate_record(make(bsn="123456789", pass_number="x", birth_date=date(1800, 1, 1)), TODAY)
    assert [reason.split(":")[0] for reason in result.reasons] == ["bsn", "pass_number", "birth_date"]


@given(number=st.integers(min_value=0, max_value=10**9 - 1))
def test_the_inline_11_proof_agrees_with_stdnum(number):
    bsn = f"{number:09d}"
    expected = bsn != "000000000" and bsn_number.checksum(bsn) == 0
    assert isinstance(validate_record(make(bsn=bsn), TODAY), CardholderRecord) is expected


@given(bsn=st.text(alphabet=st.characters(categories=["Nd", "No"]), min_size=8, max_size=9))
def test_digits_of_other_scripts_fail_the_11_proof_instead_of_crashing(bsn):
    """isdigit() accepts "²" and Arabic-Indic digits; no BSN holds them, and stdnum raised on some."""
    if bsn.isascii():
        return
    result = validate_record(make(bsn=bsn), TODAY)
    assert isinstance(result, RejectedRecord)
    assert result.reasons[0].startswith("bsn: fails the BSN 11-proof")


def test_a_replaced_pass_number_in_superscript_digits_is_refused():
    result = validate_record(make(replaces_pass_number="6064366011000²"), TODAY)
    assert isinstance(result, RejectedRecord) and result.reasons == ("replaces_pass_number: must contain digits only",)


@pytest.mark.parametrize("field", ["household_id", "cardholder_id", "first_names", "initials", "surname_prefix",
                                   "surname"])
@pytest.mark.parametrize("half", ["\ud83d", "\ude42", "\udcff"], ids=["high half", "low half", "escaped byte"])
def test_half_a_utf16_pair_is_refused_naming_the_field_not_the_value(field, half):
    """A JSON source can send "\\ud83d" alone (a name cut off inside an emoji); no UTF-8 encoder, and so no hash,
    encryption or database, takes it. The record is refused by itself instead of failing the whole run."""
    result = validate_record(make(**{field: f"Zoë{half}Jansen"}), TODAY)
    assert isinstance(result, RejectedRecord)
    assert result.reasons == (f"{field}: holds half of a UTF-16 character pair, which is not text; correct it in "
                              "the source system",)
    assert "Zoë" not in result.reason and "Jansen" not in result.reason
    result.reason.encode()  # the reason itself is stored and reported


def test_a_whole_utf16_pair_and_any_other_letter_pass():
    record = make(first_names="Zoë 🙂", surname="Łódź-李", initials="Ø.", surname_prefix="d'")
    assert validate_record(record, TODAY) == record


def test_every_text_field_with_half_a_pair_is_named():
    result = validate_record(make(first_names="A\ud83d", surname="B\ud83d", bsn="12345"), TODAY)
    assert [reason.split(":")[0] for reason in result.reasons] == ["bsn", "first_names", "surname"]


@pytest.mark.parametrize("field", ["household_id", "cardholder_id", "first_names", "surname"])
def test_a_nul_character_is_refused_naming_the_field_not_the_value(field):
    """PostgreSQL stores no NUL in text (the ids are kept as text): one such record failed the whole run there."""
    result = validate_record(make(**{field: "Jan\x00sen"}), TODAY)
    assert isinstance(result, RejectedRecord)
    assert result.reasons == (f"{field}: holds a NUL character, which is not text; correct it in the source system",)
    assert "Jan" not in result.reason


@pytest.mark.parametrize("field", ["household_id", "cardholder_id"])
def test_an_id_longer_than_the_database_keeps_is_refused_and_one_that_fits_passes(field):
    """PostgreSQL refuses a longer one (varchar(128)): one such record failed the whole run there."""
    assert validate_record(make(**{field: "7" * ID_MAX_LENGTH}), TODAY) == make(**{field: "7" * ID_MAX_LENGTH})
    result = validate_record(make(**{field: "7" * (ID_MAX_LENGTH + 1)}), TODAY)
    assert isinstance(result, RejectedRecord)
    assert result.reasons == (f"{field}: is longer than {ID_MAX_LENGTH} characters; correct it in the source system, "
                              "or map a shorter id",)


def test_the_longest_id_is_what_the_database_keeps():
    for model in (Household, Cardholder):
        assert model.__table__.c.source_key.type.length == ID_MAX_LENGTH


@pytest.mark.parametrize("field", ["household_id", "cardholder_id"])
@pytest.mark.parametrize("blank", ["", "   ", "\t"])
def test_an_empty_id_is_refused_not_taken_for_another_persons(field, blank):
    """Two people sent with cardholder id "" would be one cardholder with two passes: the second's pass given to
    the first."""
    rejected = validate_record(make(**{field: blank}), TODAY)
    assert isinstance(rejected, RejectedRecord)
    assert rejected.reasons == (f"{field}: is empty or only spaces; correct it in the source system",)


@pytest.mark.parametrize("changes", [
    {"cardholder_id": "999993653"},             # a back office that keys its clients by BSN
    {"cardholder_id": " 999993653 "},
    {"household_id": "999993653"},               # the main holder's BSN as the household's key, on their own line
    {"cardholder_id": "9921", "bsn": "000009921"},  # a spreadsheet dropped the id's zeros
    {"cardholder_id": "BSN-999993653"},
])
def test_a_record_keyed_by_its_own_bsn_is_refused(changes):
    # The household and cardholder ids are stored in plain text (the source_key columns) to find the row the next
    # night: a BSN there would sit unencrypted beside its encrypted copy.
    rejected = validate_record(make(**changes), TODAY)
    assert isinstance(rejected, RejectedRecord)
    assert any("is the cardholder's BSN" in reason for reason in rejected.reasons)
    assert all("999993653" not in reason and "9921" not in reason for reason in rejected.reasons)
    assert not any(reason.startswith("bsn:") for reason in rejected.reasons)  # the BSN itself is fine


def test_an_id_that_merely_holds_digits_is_kept():
    assert isinstance(validate_record(make(cardholder_id="999993847", household_id="12345678"), TODAY),
                      CardholderRecord)
