"""The mapping's record builder gives exactly what CardholderRecord(...) gives."""

import dataclasses
import pickle
from datetime import date

import pytest

from adapter.records import CardholderRecord, PassStatus, SourceRecord, cardholder_builder


def test_the_builder_gives_the_same_frozen_record_as_the_constructor():
    values = {"pass_number": "6400000000000011", "household_id": "H1", "cardholder_id": "P1",
              "bsn": "999993653", "birth_date": date(2014, 11, 2), "pass_status": PassStatus.BLOCKED}
    built = cardholder_builder(tuple(values))("line 2", list(values.values()))
    expected = CardholderRecord(source_key="line 2", **values)
    assert built == expected and hash(built) == hash(expected) and repr(built) == repr(expected)
    assert [getattr(built, item.name) for item in dataclasses.fields(CardholderRecord)] == \
        [getattr(expected, item.name) for item in dataclasses.fields(CardholderRecord)]
    assert built.is_child is None and built.valid_until is None  # the defaults
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.bsn = "999993847"
    assert dataclasses.replace(built, surname="Visser").surname == "Visser"
    assert pickle.loads(pickle.dumps(built)) == expected


def test_the_builder_refuses_unknown_or_missing_fields():
    with pytest.raises(ValueError):
        cardholder_builder(("household_id", "cardholder_id", "pass_number", "shoe_size"))
    with pytest.raises(ValueError):
        cardholder_builder(("household_id", "cardholder_id"))  # pass_number has no default


def test_a_raw_source_record_names_no_one_in_its_repr():
    # A connector's raw record holds the export's columns as they came: BSN, names and birth date. Its repr
    # ends up wherever a record is put in a message (an error of a plug-in connector, a debug line), where no
    # mask recognises a name or a date.
    raw = SourceRecord("line 2", {"BSN": "999993653", "Voornamen": "Sanne", "Achternaam": "Jansen",
                                  "Geboortedatum": "05-05-2015", "Pasnummer": "4821"})
    shown = repr(raw)
    assert "line 2" in shown
    for value in ("999993653", "Sanne", "Jansen", "05-05-2015", "4821"):
        assert value not in shown
    assert raw == SourceRecord("line 2", dict(raw.fields))  # still compared by its fields
