"""Fuzzing: whatever an export holds, reading and mapping never crash.

Every CSV line and every transform input that Hypothesis can think of ends as a
mapped record or as a rejected one with a reason; a reason never repeats the
value it refused (the value may be a BSN or a name).
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st

from adapter.mapping import load_mapping
from adapter.records import CardholderRecord, RejectedRecord
from adapter.sources import map_records
from adapter.transforms import TRANSFORMS, TransformError
from connectors.csv_file import CsvConnector

REPO = Path(__file__).parents[2]
DEMO_MAPPING = load_mapping(REPO / "mappings" / "demo-csv.yaml")
HEADER = ("Huishoudnummer;Klantnummer;BSN;Voornamen;Voorvoegsel;Achternaam;Geboortedatum;"
          "Pasnummer;Status;Geldig vanaf;Geldig tot;Categorie;Saldo")
COLUMNS = HEADER.count(";") + 1

# Cells drawn from what real exports get wrong: digits, dates in several shapes,
# cp1252 letters, quotes, delimiters inside cells, blanks.
cell = st.one_of(
    st.text(alphabet=st.characters(codec="cp1252", exclude_characters="\r\n\x00"), max_size=20),
    st.from_regex(r"\d{1,20}", fullmatch=True),
    st.from_regex(r"\d{1,2}-\d{1,2}-\d{2,5}", fullmatch=True),
    st.sampled_from(["Actief", "Geblokkeerd", "Vervangen", "Verlopen", "K", "M", "", " ", '"', ";", "31-02-2020"]),
)
csv_row = st.lists(cell, min_size=COLUMNS - 2, max_size=COLUMNS + 2).map(
    lambda cells: ";".join(c.replace('"', '""') if ";" not in c else f'"{c.replace(chr(34), chr(34) * 2)}"'
                           for c in cells))
FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@FUZZ
@given(rows=st.lists(csv_row, min_size=1, max_size=8), encoding=st.sampled_from(["cp1252", "utf-8-sig"]))
def test_any_csv_rows_map_or_are_rejected_with_a_reason(tmp_path_factory, rows, encoding):
    path = tmp_path_factory.mktemp("fuzz") / "export.csv"
    path.write_bytes(("\r\n".join([HEADER, *rows]) + "\r\n").encode(encoding, errors="replace"))
    connector = CsvConnector({"path": str(path), "encoding": "auto"}, source_name="fuzz")
    results = list(map_records(connector, DEMO_MAPPING))
    assert len(results) <= len(rows)
    for result in results:
        assert isinstance(result, CardholderRecord | RejectedRecord)
        if isinstance(result, RejectedRecord):
            assert result.reason and result.source_key.startswith("line ")
        else:
            assert result.pass_number.isdigit()


VALUES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=30),
                   st.lists(st.text(max_size=5), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(),
                                                                               max_size=2))
TRANSFORM_PARAMS = [
    ("trim", None), ("digits_only", None), ("left_pad", {"width": 9}), ("date", {"format": "%d-%m-%Y"}),
    ("date", {"format": "iso"}), ("date", {"format": "utc_instant_local_end_of_day"}),
    ("map", {"values": {"K": True, "M": False}}), ("join", {"separator": " "}), ("default", {"value": "x"}),
]


@FUZZ
@given(transform=st.sampled_from(TRANSFORM_PARAMS), value=VALUES)
def test_every_transform_returns_or_refuses_by_rule(transform, value):
    name, params = transform
    spec = TRANSFORMS[name]
    transform = spec.builder(spec.params_model.model_validate(params) if spec.params_model else None)
    try:
        transform(value)
    except TransformError as refusal:
        # Names the rule, never the value.
        if isinstance(value, str) and len(value) >= 4:
            assert value not in str(refusal)


def test_every_transform_is_covered_by_the_fuzz_parameters():
    assert {name for name, _ in TRANSFORM_PARAMS} == set(TRANSFORMS)


@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(rows=st.lists(csv_row, min_size=1, max_size=6))
def test_the_sync_never_crashes_on_any_export(tmp_path_factory, sqlite_template, rows):
    """The whole nightly path on fuzzed rows: it succeeds or refuses with a reason, and every bad row is named."""
    import shutil

    from adapter import ledger
    from adapter.crypto import Vault
    from adapter.db import Database
    from adapter.models import SyncStatus
    from adapter.rules import load_rules
    from adapter.settings import SyncSettings
    from adapter.sync import run_sync
    from tests.conftest import TEST_BLIND_INDEX_KEY, TEST_ENCRYPTION_KEY

    folder = tmp_path_factory.mktemp("fuzz-sync")
    shutil.copyfile(sqlite_template, folder / "adapter.db")
    path = folder / "export.csv"
    path.write_bytes(("\r\n".join([HEADER, *rows]) + "\r\n").encode("cp1252", errors="replace"))
    db = Database(f"sqlite:///{folder / 'adapter.db'}")
    records = list(map_records(CsvConnector({"path": str(path), "encoding": "auto"}, source_name="fuzz"),
                               DEMO_MAPPING))
    try:
        result = run_sync(db, Vault([TEST_ENCRYPTION_KEY], TEST_BLIND_INDEX_KEY), "fuzz", records,
                          settings=SyncSettings(), rules=load_rules(REPO / "config" / "budgets.yaml"),
                          actor="fuzz")
        assert result.status in (SyncStatus.SUCCEEDED, SyncStatus.REFUSED)
        if result.status == SyncStatus.REFUSED:
            assert result.reason
        else:
            # Every row the mapping refused is refused by the sync too (which may refuse more, e.g. a BSN twice).
            assert result.rejected >= sum(isinstance(record, RejectedRecord) for record in records)
        with db.read() as session:
            assert ledger.verify(session) == []
    finally:
        db.dispose()
