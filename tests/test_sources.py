from datetime import date

import pytest

from adapter.mapping import MappingError
from adapter.records import CardholderRecord, RejectedRecord
from adapter.registry import ConnectorRegistry, UnknownConnectorError
from adapter.sources import iter_mapped, open_source
from connectors.csv_file import CsvConnector
from tests.conftest import make_source


@pytest.fixture
def csv_only_registry():
    registry = ConnectorRegistry()
    registry.register("csv", CsvConnector)
    return registry


def test_open_source_builds_the_connector_and_compiles_the_mapping(demo_csv_source, csv_only_registry):
    connector, mapping = open_source(demo_csv_source, csv_only_registry, source_name="demo")
    assert isinstance(connector, CsvConnector) and connector.source_name == "demo"
    assert "pass_number" in mapping.field_names


def test_iter_mapped_streams_validated_records_of_the_newest_export(demo_csv_source, csv_only_registry):
    results = list(iter_mapped(demo_csv_source, csv_only_registry, today=date(2026, 11, 29)))
    assert all(isinstance(result, CardholderRecord) for result in results)
    assert len(results) == 6  # the 28 November export, not the 27 November one
    assert results[3].bsn == "000009921"


def test_iter_mapped_rejects_what_validation_refuses(demo_csv_source, csv_only_registry):
    # On 1 January 2013 the children born later are "born in the future".
    results = list(iter_mapped(demo_csv_source, csv_only_registry, today=date(2013, 1, 1)))
    rejected = [result for result in results if isinstance(result, RejectedRecord)]
    assert [result.source_key for result in rejected] == ["line 3", "line 4"]
    assert all(result.reasons == ("birth_date: lies in the future",) for result in rejected)


def test_unknown_connector_and_broken_mapping_fail_before_any_io(demo_csv_source, csv_only_registry, tmp_path):
    with pytest.raises(UnknownConnectorError, match="known connectors: csv"):
        open_source(make_source("sftp", demo_csv_source.mapping), csv_only_registry)
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\nfields: {}\n", encoding="utf-8")
    with pytest.raises(MappingError):
        open_source(make_source("csv", broken, {"path": "/nowhere"}), csv_only_registry)
