"""One token per cardholder: every field survives the round trip, and nothing personal leaks on the way."""

from __future__ import annotations

import json
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapter.crypto import Vault
from adapter.personal import (EMPTY, PersonalFields, UnreadablePersonalData, open_sealed, personal_values, seal,
                              seal_values)
from tests.conftest import TEST_BLIND_INDEX_KEY, TEST_ENCRYPTION_KEY
from tests.fixture_personal_data import FIXTURE_BIRTH_DATES, FIXTURE_SURNAMES, TEST_BSNS, find_personal_data_at_rest

SANNE = PersonalFields(bsn=TEST_BSNS[5], first_names="Sanne Zoë", initials="S.Z.", surname_prefix="van",
                       surname=FIXTURE_SURNAMES[0], birth_date=date.fromisoformat(FIXTURE_BIRTH_DATES[0]))

VAULT = Vault([TEST_ENCRYPTION_KEY], TEST_BLIND_INDEX_KEY)  # one for all examples: a fixture would be per test
texts = st.one_of(st.none(), st.text(max_size=40))


@given(bsn=texts, first_names=texts, initials=texts, surname_prefix=texts, surname=texts,
       birth_date=st.one_of(st.none(), st.dates()))
def test_any_fields_come_back_as_they_went_in(bsn, first_names, initials, surname_prefix, surname, birth_date):
    personal = PersonalFields(bsn, first_names, initials, surname_prefix, surname, birth_date)
    assert open_sealed(VAULT, seal(VAULT, personal)) == personal


def test_nothing_to_hide_is_no_token(vault):
    assert seal(vault, PersonalFields()) is None
    assert open_sealed(vault, None) == EMPTY == PersonalFields()
    assert seal(vault, PersonalFields(initials="")) is not None  # an empty string is a value, not an absence


def test_one_token_holds_no_value_in_clear(vault):
    token = seal(vault, SANNE)
    assert token is not None and find_personal_data_at_rest(token.encode()) == []
    assert "Sanne" not in token


def test_repr_names_no_one():
    shown = repr(SANNE)
    assert find_personal_data_at_rest(shown.encode()) == [] and "Sanne" not in shown
    assert shown.startswith("PersonalFields(")


@pytest.mark.parametrize("plaintext", ['["' + TEST_BSNS[0] + '"]', '{"b": 999993653}', '{"d": "' + TEST_BSNS[0] + '"}',
                                       "not json " + TEST_BSNS[0]])
def test_a_token_that_is_not_personal_fields_is_refused_without_its_contents(vault, plaintext):
    with pytest.raises(UnreadablePersonalData) as refused:
        open_sealed(vault, vault.encrypt(plaintext))
    assert TEST_BSNS[0] not in str(refused.value) and "999993653" not in str(refused.value)
    # No JSON or date error behind it either: those carry the decrypted text (.doc, the message).
    assert refused.value.__cause__ is None and refused.value.__context__ is None



def test_the_token_layout_is_pinned_because_stored_tokens_and_migration_0005_use_it(vault):
    """Tokens already in databases, and migration 0005 (which imports this codec), are written in this
    layout: a change to it needs a new migration that rewrites the stored tokens, not an edit here."""
    written = vault.decrypt(seal(vault, SANNE))
    assert written == ('{"b":"' + TEST_BSNS[5] + '","f":"Sanne Zoë","i":"S.Z.","p":"van","s":"'
                       + FIXTURE_SURNAMES[0] + '","d":"' + FIXTURE_BIRTH_DATES[0] + '"}')
    assert open_sealed(vault, vault.encrypt(written)) == SANNE


@given(bsn=texts, first_names=texts, initials=texts, surname_prefix=texts, surname=texts,
       birth_date=st.one_of(st.none(), st.dates()))
def test_the_token_is_the_json_of_its_non_empty_fields_whatever_they_hold(bsn, first_names, initials, surname_prefix,
                                                                          surname, birth_date):
    """The layout is built by hand, for speed (``personal._dumps``): it must stay exactly the JSON that
    stored tokens hold, quotes, backslashes, control characters and any letter included."""
    packed = {"b": bsn, "f": first_names, "i": initials, "p": surname_prefix, "s": surname,
              "d": birth_date.isoformat() if birth_date else None}
    expected = json.dumps({short: value for short, value in packed.items() if value is not None},
                          ensure_ascii=False, separators=(",", ":"))
    token = seal(VAULT, PersonalFields(bsn, first_names, initials, surname_prefix, surname, birth_date))
    assert (None if token is None else VAULT.decrypt(token)) == (None if expected == "{}" else expected)


@pytest.mark.parametrize("hard", ['"', "\\", "\n\t\x00\x1f\x7f", "Zoë ŁÇ 李 🙂", "\u2028\u2029\ufeff"])
def test_the_sealer_writes_from_a_tuple_the_json_that_stored_tokens_hold(vault, hard):
    """Characters a random text rarely holds, each against the JSON encoder's own text (what stored tokens hold)."""
    personal = PersonalFields(TEST_BSNS[5], f"Sanne{hard}", None, "van", hard, date(1, 1, 1))
    expected = json.dumps({"b": TEST_BSNS[5], "f": f"Sanne{hard}", "p": "van", "s": hard, "d": "0001-01-01"},
                          ensure_ascii=False, separators=(",", ":"))
    from_values = seal_values(vault, personal_values(personal))
    assert vault.decrypt(from_values) == vault.decrypt(seal(vault, personal)) == expected
    assert open_sealed(vault, from_values) == personal


@pytest.mark.parametrize("value", [999993653, 12.5, True, ["Sanne"]])
def test_a_field_that_is_not_text_is_refused_without_its_value(vault, value):
    with pytest.raises(TypeError) as refused:
        seal_values(vault, (TEST_BSNS[5], value, None, None, None, None))
    assert str(value) not in str(refused.value) and TEST_BSNS[5] not in str(refused.value)
