from datetime import date
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapter.mapping import MappingError, compile_mapping, load_mapping
from adapter.records import CardholderRecord, PassStatus, RejectedRecord, SourceRecord
from adapter.transforms import TransformError

MAPPINGS = Path(__file__).parents[1] / "mappings"
DEMO_CSV_COLUMNS = ("Huishoudnummer", "Klantnummer", "BSN", "Voornamen", "Voorvoegsel", "Achternaam", "Geboortedatum",
                    "Pasnummer", "Status", "Geldig vanaf", "Geldig tot", "Categorie")

MINIMAL_FIELDS = {
    "household_id": {"column": "H"},
    "cardholder_id": {"column": "C"},
    "pass_number": {"column": "P", "transforms": ["digits_only"]},
}


def test_every_shipped_mapping_is_valid():
    shipped = sorted(MAPPINGS.glob("*.yaml"))
    assert {path.name for path in shipped} >= {"demo-csv.yaml", "demo-soap.yaml", "demo-rest.yaml"}
    for path in shipped:
        load_mapping(path)


def test_a_mapping_with_several_mistakes_reports_all_of_them_with_key_paths(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("""
version: 2
colour: blue
records: "leden.passen[0]"
fields:
  household_id: {column: H, path: x}
  pass_number: {column: P, transforms: [trim, shout]}
  birth_date: {column: G, transforms: [{date: dd-mm-yyyy}]}
  valid_until: {column: T}
  pass_status: {column: S, transforms: [{map: {values: {A: actief}}}]}
  shoe_size: {column: Z}
  surname: {columns: [A, B]}
  bsn: {column: B, transforms: [{left_pad: {width: -1}}]}
""", encoding="utf-8")
    with pytest.raises(MappingError) as caught:
        load_mapping(broken)
    problems = caught.value.problems
    expected_paths = [
        "version:",
        "colour:",
        "records:",
        "fields.household_id:",
        "fields.pass_number.transforms[1]:",
        "fields.birth_date.transforms[0].date.format:",
        "fields.valid_until.transforms:",
        "fields.pass_status.transforms[0].map.values.A:",
        "fields.shoe_size:",
        "fields.surname.transforms:",
        "fields.bsn.transforms[0].left_pad.width:",
        "fields.cardholder_id:",
    ]
    for key_path in expected_paths:
        assert any(problem.startswith(key_path) for problem in problems), (key_path, problems)
    assert len(problems) == len(expected_paths), problems
    assert "broken.yaml" in str(caught.value)


def test_missing_file_and_bad_yaml_are_clear(tmp_path):
    with pytest.raises(MappingError, match="file not found"):
        load_mapping(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("fields: [unclosed", encoding="utf-8")
    with pytest.raises(MappingError, match="not valid YAML"):
        load_mapping(bad)


def test_flat_row_maps_to_one_record():
    mapping = compile_mapping({"version": 1, "fields": {
        **MINIMAL_FIELDS,
        "surname": {"columns": ["Voorvoegsel", "Achternaam"], "transforms": ["join"]},
        "pass_status": {"value": "blocked"},
    }})
    [record] = mapping.apply(SourceRecord("line 2", {
        "H": "h1", "C": "c1", "P": "6064 3660", "Voorvoegsel": "van der", "Achternaam": "Berg"}))
    assert record == CardholderRecord(
        source_key="line 2", household_id="h1", cardholder_id="c1", pass_number="60643660",
        surname="van der Berg", pass_status=PassStatus.BLOCKED)


def test_a_failing_field_rejects_the_record_naming_field_and_rule_only():
    mapping = compile_mapping({"version": 1, "fields": {
        **MINIMAL_FIELDS, "birth_date": {"column": "G", "transforms": [{"date": "%d-%m-%Y"}]}}})
    [rejected] = mapping.apply(SourceRecord("line 7", {"H": "h", "C": "c", "P": "", "G": "31-02-2014"}))
    assert isinstance(rejected, RejectedRecord)
    assert rejected.source_key == "line 7"
    assert rejected.reasons == (
        "birth_date: is not an existing calendar date (%d-%m-%Y)",
        "pass_number: is missing (required)",
    )


def test_connector_problems_become_a_rejection():
    mapping = compile_mapping({"version": 1, "fields": MINIMAL_FIELDS})
    [rejected] = mapping.apply(SourceRecord("line 4", {}, ("row has 2 columns, the header has 3",)))
    assert rejected == RejectedRecord("line 4", ("row has 2 columns, the header has 3",))


HOUSEHOLD = {
    "huishoudnummer": "HH-1",
    "leden": [
        {"nummer": "L1", "bsn": "999993653", "voornamen": "Anouk",
         "passen": [{"pasnummer": "1001", "actief": True}, {"pasnummer": "1002", "actief": False}]},
        {"nummer": "L2", "bsn": "999993847", "voornamen": "Zoë", "passen": [{"pasnummer": "2001", "actief": True}]},
        {"nummer": "L3", "bsn": "999992077", "voornamen": "Noël", "passen": None},
    ],
}


def test_nested_records_reach_parent_and_root_fields():
    mapping = compile_mapping({"version": 1, "records": "leden[*].passen[*]", "fields": {
        "household_id": {"path": "$.huishoudnummer"},
        "cardholder_id": {"path": "^.nummer"},
        "bsn": {"path": "^.bsn"},
        "first_names": {"path": "^.voornamen"},
        "pass_number": {"path": "pasnummer"},
        "pass_status": {"path": "actief", "transforms": [{"map": {"values": {True: "active", False: "blocked"}}}]},
    }})
    records = mapping.apply(SourceRecord("page 1 item 0", HOUSEHOLD))
    assert [(r.source_key, r.household_id, r.cardholder_id, r.first_names, r.pass_number, r.pass_status)
            for r in records] == [
        ("page 1 item 0 leden[0].passen[0]", "HH-1", "L1", "Anouk", "1001", PassStatus.ACTIVE),
        ("page 1 item 0 leden[0].passen[1]", "HH-1", "L1", "Anouk", "1002", PassStatus.BLOCKED),
        ("page 1 item 0 leden[1].passen[0]", "HH-1", "L2", "Zoë", "2001", PassStatus.ACTIVE),
    ]


def test_several_records_paths_and_indexed_paths():
    document = {"id": 7, "voornaam": "Anouk", "passen": [{"pasnummer": 1001}],
                "sub_pashouders": [{"id": 8, "voornaam": "Zoë", "passen": [{"pasnummer": 2001}]}],
                "adressen": [{"postcode": "1011AB"}]}
    mapping = compile_mapping({"version": 1, "records": ["passen[*]", "sub_pashouders[*].passen[*]"], "fields": {
        "household_id": {"path": "$.id"},
        "cardholder_id": {"path": "^.id"},
        "first_names": {"path": "^.voornaam"},
        "pass_number": {"path": "pasnummer"},
        "surname": {"path": "$.adressen[0].postcode"},
    }})
    records = mapping.apply(SourceRecord("item 0", document))
    assert [(r.household_id, r.cardholder_id, r.first_names, r.pass_number, r.surname) for r in records] == [
        ("7", "7", "Anouk", "1001", "1011AB"), ("7", "8", "Zoë", "2001", "1011AB")]


def test_is_child_must_map_to_booleans_and_wrong_types_reject():
    with pytest.raises(MappingError, match=r"fields.is_child.transforms\[0\].map.values.K"):
        compile_mapping({"version": 1, "fields": {
            **MINIMAL_FIELDS, "is_child": {"column": "K", "transforms": [{"map": {"values": {"K": "ja"}}}]}}})
    mapping = compile_mapping({"version": 1, "fields": {**MINIMAL_FIELDS, "is_child": {"column": "K"}}})
    [rejected] = mapping.apply(SourceRecord("line 2", {"H": "h", "C": "c", "P": "1234", "K": "K"}))
    assert rejected.reasons == ("is_child: is not true/false (map the source values to true and false)",)


def test_demo_csv_mapping_end_to_end_row():
    mapping = load_mapping(MAPPINGS / "demo-csv.yaml")
    row = {"Huishoudnummer": "H1", "Klantnummer": "K1", "BSN": "9921", "Voornamen": "René",
           "Voorvoegsel": "", "Achternaam": "Janssen", "Geboortedatum": "09-09-1979",
           "Pasnummer": "6064366011000004", "Status": "Geblokkeerd", "Geldig vanaf": "01-08-2026",
           "Geldig tot": "31-07-2027", "Categorie": "M", "Saldo": "0,00"}
    [record] = mapping.apply(SourceRecord("line 5", row))
    assert record.bsn == "000009921"
    assert record.surname_prefix is None
    assert record.birth_date == date(1979, 9, 9)
    assert record.pass_status is PassStatus.BLOCKED
    assert record.is_child is False


def test_a_rejection_carries_the_pass_number_when_that_field_mapped_but_never_shows_it():
    """For the sync's guard (a rejected line of a stored pass counts once): the number rides along, out of the
    record's repr and of what is compared."""
    mapping = compile_mapping({"version": 1, "fields": {
        **MINIMAL_FIELDS, "birth_date": {"column": "G", "transforms": [{"date": "%d-%m-%Y"}]}}})
    [rejected] = mapping.apply(SourceRecord("line 7", {"H": "h", "C": "c", "P": "6064 3660 01", "G": "31-02-2014"}))
    assert isinstance(rejected, RejectedRecord) and rejected.pass_number == "6064366001"
    assert "6064" not in repr(rejected) and rejected == RejectedRecord("line 7", rejected.reasons)
    [without] = mapping.apply(SourceRecord("line 8", {"H": "h", "C": "c", "P": "", "G": "31-02-2014"}))
    assert without.pass_number is None


@pytest.mark.parametrize("item", ["garbage", [1, 2], None, 12])
def test_a_record_that_is_not_an_object_is_rejected_not_lost(item):
    mapping = compile_mapping({"version": 1, "records": "lid[*]", "fields": {
        "household_id": {"path": "$.id"}, "cardholder_id": {"path": "id"}, "pass_number": {"path": "pas"}}})
    [rejected] = mapping.apply(SourceRecord("item 3", item))
    assert isinstance(rejected, RejectedRecord) and rejected.source_key == "item 3"
    assert rejected.reasons[0].startswith("record: is not an object with fields")


@pytest.mark.parametrize("field, value, said", [
    ({"path": "naam"}, {"roepnaam": "Sanne", "bsn": "999993653"}, "is a nested object, not one value"),
    ({"path": "naam", "transforms": ["trim"]}, ["Sanne"], "is a list, not one value"),
    ({"path": "naam", "transforms": ["digits_only", {"left_pad": 9}]}, {"bsn": "999993653"}, "is a nested object"),
    ({"path": "naam", "transforms": [{"left_pad": 3}]}, ["Sanne"], "is a list"),
    ({"paths": ["naam", "achternaam"], "transforms": ["join"]}, {"roepnaam": "Sanne"}, "is a nested object"),
    ({"path": "naam"}, b"Sanne", "is bytes, not text"),
])
def test_a_path_that_stops_at_an_object_or_list_rejects_the_record_instead_of_storing_its_repr(field, value, said):
    """A path one level too high (a JSON 'naam' object, an XML element with children) stored
    "{'roepnaam': 'Sanne', 'bsn': '999993653'}" as the first name, which the counter shows a shop."""
    mapping = compile_mapping({"version": 1, "fields": {
        "household_id": {"path": "h"}, "cardholder_id": {"path": "c"}, "pass_number": {"path": "p"},
        "first_names": field}})
    [rejected] = mapping.apply(SourceRecord("item 1", {"h": "H1", "c": "C1", "p": "1001", "naam": value,
                                                       "achternaam": "Vries"}))
    assert isinstance(rejected, RejectedRecord), rejected
    assert rejected.reasons[0].startswith(f"first_names: {said}")
    assert "Sanne" not in rejected.reason and "999993653" not in rejected.reason


def test_a_mapping_file_that_is_not_utf8_or_not_a_file_is_a_mapping_error(tmp_path):
    """The loaders of configuration, rules and mappings read their YAML one way (adapter.yaml_files): a mapping
    saved in cp1252 was a UnicodeDecodeError traceback before."""
    latin = tmp_path / "m.yaml"
    latin.write_bytes("version: 1  # caf\xe9\n".encode("cp1252"))
    with pytest.raises(MappingError, match="not UTF-8 text"):
        load_mapping(latin)
    with pytest.raises(MappingError, match="cannot be read .*check the source's 'mapping' key"):
        load_mapping(tmp_path)


@pytest.mark.parametrize("field", ["household_id", "is_child"])
def test_an_unreadable_value_rejects_its_record_with_its_reason_by_column_too(field):
    """A source's value its own type could not read (adapter.transforms.Unreadable), read by a column of a flat
    record rather than a path: rejected by the finish step, never taken for empty or for its repr."""
    from adapter.transforms import Unreadable

    mapping = compile_mapping({"version": 1, "fields": {**MINIMAL_FIELDS, "is_child": {"column": "K"}}})
    columns = {"household_id": "H", "is_child": "K"}
    fields = {"H": "h", "C": "c", "P": "6064366011000001", "K": None,
              columns[field]: Unreadable("the service sent a value its XML type cannot read")}
    [rejected] = mapping.apply(SourceRecord("page 1 item 0", fields))
    assert isinstance(rejected, RejectedRecord)
    assert rejected.reasons == (f"{field}: the service sent a value its XML type cannot read",)


@pytest.mark.parametrize("transforms", [[{"date": "%d-%m-%Y"}], ["trim", {"date": "%d-%m-%Y"}]])
def test_an_unreadable_value_is_refused_with_its_own_reason_before_a_transform(transforms):
    """A garbled date sent to a field with a 'date' step: the reason says the source sent what its type cannot
    read, not that the value is "not a date in format ..." (which would send the operator to the mapping)."""
    from adapter.transforms import Unreadable

    mapping = compile_mapping({"version": 1, "fields": {
        **MINIMAL_FIELDS, "birth_date": {"column": "G", "transforms": transforms}}})
    fields = {"H": "h", "C": "c", "P": "6064366011000001",
              "G": Unreadable("the service sent a value its XML type cannot read")}
    [rejected] = mapping.apply(SourceRecord("page 1 item 0", fields))
    assert isinstance(rejected, RejectedRecord)
    assert rejected.reasons == ("birth_date: the service sent a value its XML type cannot read",)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=12), st.sampled_from(
    ["  Actief ", "Vervangen", "K", "M", "01-02-2013", " 31-12-2030", "1-1-1", "12345678", "123.456.782", "ab"])),
    min_size=12, max_size=12))
def test_the_fields_mapped_together_give_what_each_gives_alone(cells):
    """The hot path maps every field in one compiled function (adapter.fused_fields); a record with a problem is
    mapped again field by field for its reasons. On any row of the demo export's columns, each field comes out of
    the two the same: the same value, or refused by both."""
    mapping = load_mapping(MAPPINGS / "demo-csv.yaml")
    levels = (dict(zip(DEMO_CSV_COLUMNS, cells)),)

    def alone(run):  # type: ignore[no-untyped-def]
        try:
            return run(levels)
        except TransformError:
            return "refused"

    each_alone = [alone(run) for _, run in mapping._fields]
    try:
        together = mapping._map_fields(levels)
    except TransformError:
        assert "refused" in each_alone
    else:
        assert together == each_alone
