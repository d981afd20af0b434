"""The contract every registered connector keeps, discovered from the real entry points.

A connector installed by any package is tested here the moment it is registered. The checks live in
``adapter.connector_contract``, so a plug-in's own tests run the same ones.
"""

import contextlib

import pytest

from adapter import connector_contract
from adapter.connector import CheckBuilder, Connector, ConnectorOptions
from adapter.records import SourceRecord
from adapter.registry import ConnectorRegistry

REGISTERED = ConnectorRegistry().load_entry_points().items()


def test_the_built_in_connectors_are_registered():
    assert {"csv", "soap", "rest"} <= {name for name, _ in REGISTERED}


@pytest.mark.parametrize("name, connector_class", REGISTERED, ids=[name for name, _ in REGISTERED])
@pytest.mark.parametrize("check", connector_contract.CHECKS)
def test_every_registered_connector_keeps_the_contract(name, connector_class, check):
    getattr(connector_contract, f"assert_{check}")(connector_class)


class _CarelessOptions(ConnectorOptions):
    pass


class _Careless(Connector):
    """Keeps the letter of the interface and breaks its contract: a check that raises, keys that repeat."""

    options_model = _CarelessOptions
    description = "careless"

    def records(self):
        self.options  # noqa: B018 - raises ConnectorConfigError on bad options, as it should
        for number in range(2):
            yield SourceRecord("page 1", {"pasnummer": f"606436601{number}"})

    def check(self):
        if self.option_problems:
            raise ValueError("bad options")
        check = CheckBuilder(self.source_name, "careless")
        check.passed("settings", "fine")
        return check.result()

    @classmethod
    @contextlib.contextmanager
    def sample(cls):
        yield cls({}, source_name="sample-careless")


def test_the_contract_finds_a_check_that_raises_and_keys_that_repeat():
    with pytest.raises(AssertionError, match="check\\(\\) must report, never raise"):
        connector_contract.assert_checks_bad_options_without_raising(_Careless)
    with pytest.raises(Exception, match="yielded the key 'page 1' for two records in a row"):
        connector_contract.assert_sample_checks_ok_and_yields_records(_Careless)


class _NamesItsRecords(_Careless):
    """Labels each record with its household's number, which no run-time check can tell from a label."""

    def records(self):
        self.options  # noqa: B018
        for household in ("HH-100", "HH-200"):
            yield SourceRecord(f"household {household}", {"huishouden": household, "pasnummer": "6064366011"})

    def check(self):
        check = CheckBuilder(self.source_name, "names-its-records")
        check.passed("settings", "fine")
        return check.result()


def test_the_contract_finds_a_value_of_the_record_in_its_key():
    with pytest.raises(AssertionError, match="'household HH-100' has one of its own values in its key"):
        connector_contract.assert_sample_checks_ok_and_yields_records(_NamesItsRecords)
