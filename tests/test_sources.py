from datetime import date

import pytest

from adapter.connector import CheckBuilder, Connector, ConnectorError, ConnectorOptions
from adapter.mapping import MappingError
from adapter.records import CardholderRecord, RejectedRecord, SourceRecord
from adapter.registry import ConnectorRegistry, UnknownConnectorError
from adapter.sources import iter_mapped, open_source
from connectors.csv_file import CsvConnector
from tests.conftest import REPO, make_source


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


# -- what the core checks of a connector it did not write ----------------------------------------------------------

class _CarelessOptions(ConnectorOptions):
    mode: str


class _CarelessConnector(Connector):
    """A plug-in that breaks the connector contract in the way ``mode`` says."""

    options_model = _CarelessOptions
    description = "breaks the contract on purpose"

    def records(self):
        good = {"Pasnummer": "6064366011", "Huishouden": "H1", "Persoon": "P1"}
        if self.options.mode == "plain dict":
            yield good
        elif self.options.mode == "key not text":
            yield SourceRecord(12, good)
        elif self.options.mode == "key is a document":
            yield SourceRecord("line 1 " + "x" * 5000, good)
        elif self.options.mode == "one key for every record":
            # Records with problems, so the mapping's columns are not asked for.
            yield SourceRecord("page 1", {}, ("row has 2 columns, the header has 6",))
            yield SourceRecord("page 1", {}, ("row has 2 columns, the header has 6",))
        elif self.options.mode == "key holds a BSN":
            yield SourceRecord("person 999993653", good)  # a test BSN
        elif self.options.mode == "key holds a BSN that lost its leading zero":
            yield SourceRecord("person 12345672", good)  # a spreadsheet dropped the 0 of 012345672
        elif self.options.mode == "problems is one text":
            yield SourceRecord("line 1", {}, "row is not valid XML")
        elif self.options.mode == "a problem is not text":
            yield SourceRecord("line 1", {}, (None,))
        elif self.options.mode == "raises with a name":
            raise ValueError("no pass for Sanne de Vries, born 02-05-2014")  # made-up person
        elif self.options.mode == "exits":
            raise SystemExit(0)
        elif self.options.mode == "file gone":
            raise FileNotFoundError(2, "No such file or directory")

    def check(self):
        return CheckBuilder(self.source_name, "careless").result()


def _careless_source(mode: str):
    registry = ConnectorRegistry()
    registry.register("careless", _CarelessConnector)
    return make_source("careless", REPO / "mappings" / "demo-csv.yaml", {"mode": mode}), registry


@pytest.mark.parametrize("mode, said", [
    ("plain dict", "yielded a dict, not an adapter.records.SourceRecord"),
    ("key not text", "yielded a record whose key is not text"),
    ("key is a document", "yielded a record key of 5007 characters"),
    ("one key for every record", "yielded the key 'page 1' for two records in a row"),
    # Stored in plain text with the run's outcomes and shown on the dashboard.
    ("key holds a BSN", "yielded the key 'person [number removed]', which holds a run of 8 or more digits"),
    ("key holds a BSN that lost its leading zero", "which holds a run of 8 or more digits"),
    # Stored as the reasons "r; o; w;  ; i; s; ..." ("problems is one text"), or failing the run deep in the sync.
    ("problems is one text", "yielded a record whose problems are not a tuple of texts"),
    ("a problem is not text", "yielded a record whose problems are not a tuple of texts"),
])
def test_a_connector_that_breaks_the_record_contract_is_named_instead_of_failing_deep_in_the_mapping(mode, said):
    source, registry = _careless_source(mode)
    with pytest.raises(ConnectorError) as raised:
        list(iter_mapped(source, registry, source_name="gemeente"))
    assert said in str(raised.value)
    assert "tests.test_sources._CarelessConnector" in str(raised.value)


@pytest.mark.parametrize("mode, said", [
    ("raises with a name", "stopped with ValueError at test_sources.py:"),
    # A SystemExit(0) crossing from the reading worker ended the sync command with status 0: a failed night
    # that cron and the monitoring took for a good one.
    ("exits", "stopped with SystemExit at test_sources.py:"),
    ("file gone", "stopped with FileNotFoundError (No such file or directory) at test_sources.py:"),
])
def test_an_unexpected_error_of_a_connector_is_named_by_its_class_and_place_never_its_text(mode, said):
    source, registry = _careless_source(mode)
    with pytest.raises(ConnectorError) as raised:
        list(iter_mapped(source, registry, source_name="gemeente"))
    text = str(raised.value)
    assert said in text and "tests.test_sources._CarelessConnector" in text
    assert "Sanne" not in text and "2014" not in text
    assert raised.value.__cause__ is None and raised.value.__suppress_context__  # no traceback quotes it either


class _ConstructorRaises(_CarelessConnector):
    """A plug-in that reads its options in its constructor and raises there, which the contract leaves to
    ``check()`` and ``records()``."""

    def __init__(self, options, **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(options, **kwargs)
        raise KeyError("secret-token-abc")  # what such a plug-in may have read from the environment


def test_a_connector_whose_constructor_raises_is_named_with_where_it_stopped_never_its_text():
    registry = ConnectorRegistry()
    registry.register("strict", _ConstructorRaises)
    source = make_source("strict", REPO / "mappings" / "demo-csv.yaml", {"mode": "plain dict"})
    with pytest.raises(ConnectorError) as raised:
        list(iter_mapped(source, registry, source_name="gemeente"))
    text = str(raised.value)
    assert "tests.test_sources._ConstructorRaises stopped with KeyError at test_sources.py:" in text
    assert "set up from the source's options" in text and "secret-token" not in text
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
