"""The mapping's record builder gives exactly what CardholderRecord(...) gives."""

import dataclasses
import pickle
from datetime import date

import pytest

from adapter.records import CardholderRecord, PassStatus, cardholder_builder


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
