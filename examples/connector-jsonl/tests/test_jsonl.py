"""The example connector's own tests: the shared contract, its sample through its mapping, its edge cases."""

import json
from pathlib import Path

import pytest

from adapter.connector import ConnectorError
from adapter.connector_contract import assert_keeps_the_contract
from adapter.mapping import load_mapping
from adapter.records import CardholderRecord
from adapter.sources import map_records
from stadspas_jsonl.connector import JsonLinesConnector

MAPPING = Path(__file__).parent.parent / "mappings" / "jsonl.yaml"


def test_keeps_the_connector_contract():
    assert_keeps_the_contract(JsonLinesConnector)


def test_the_sample_maps_to_four_passes_with_the_leading_zero_bsn_kept():
    with JsonLinesConnector.sample() as sample:
        mapped = list(map_records(sample, load_mapping(MAPPING)))
    assert all(isinstance(record, CardholderRecord) for record in mapped)
    assert [record.pass_number[-4:] for record in mapped] == ["0001", "0002", "0003", "0004"]
    assert mapped[2].bsn == "000009921" and mapped[3].replaces_pass_number == "6064366011000003"


def test_a_bad_line_is_rejected_by_key_not_value(tmp_path):
    export = tmp_path / "pashouders-2026-12-02.jsonl"
    export.write_text('{"a": 1}\n{not json 999993653\n[1, 2]\n', encoding="utf-8")
    records = list(JsonLinesConnector({"path": str(tmp_path)}, source_name="t").records())
    assert [(record.key, record.problems) for record in records] == [
        ("line 1", ()), ("line 2", ("line is not valid JSON",)), ("line 3", ("line is not a JSON object",))]


def test_an_unfinished_upload_is_refused(tmp_path):
    (tmp_path / "pashouders-2026-12-02.jsonl").write_text(json.dumps({"a": 1}), encoding="utf-8")
    with pytest.raises(ConnectorError, match="upload may be unfinished"):
        list(JsonLinesConnector({"path": str(tmp_path)}, source_name="t").records())


def test_a_line_past_the_limit_is_refused_not_read(tmp_path):
    (tmp_path / "x.jsonl").write_text('{"a": "' + "x" * 5000 + '"}\n', encoding="utf-8")
    with pytest.raises(ConnectorError, match="longer than 1024 bytes"):
        list(JsonLinesConnector({"path": str(tmp_path), "max_line_bytes": 1024}, source_name="t").records())
