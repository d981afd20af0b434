"""The contract every registered connector keeps, discovered from the real entry points.

A connector installed by any package is tested here the moment it is registered.
"""

import pickle

import pytest
from pydantic import BaseModel

from adapter.connector import CheckResult, Connector, ConnectorConfigError
from adapter.records import SourceRecord
from adapter.registry import ConnectorRegistry

REGISTERED = ConnectorRegistry().load_entry_points().items()


def test_the_built_in_connectors_are_registered():
    assert {"csv", "soap", "rest"} <= {name for name, _ in REGISTERED}


@pytest.mark.parametrize("name, connector_class", REGISTERED, ids=[name for name, _ in REGISTERED])
class TestConnectorContract:
    def test_declares_an_options_model_and_a_description(self, name, connector_class):
        assert issubclass(connector_class, Connector)
        assert isinstance(connector_class.options_model, type)
        assert issubclass(connector_class.options_model, BaseModel)
        assert connector_class.description

    def test_check_on_a_misconfigured_instance_is_readable_and_does_not_raise(self, name, connector_class):
        misconfigured = connector_class({"no_such_option": 1}, source_name="broken-source")
        result = misconfigured.check()
        assert isinstance(result, CheckResult)
        assert not result.ok
        assert [step.name for step in result.steps] == ["settings", "connection", "credentials"]
        assert result.steps[0].ok is False
        text = result.render()
        assert "broken-source" in text and "no_such_option" in text

    def test_reading_a_misconfigured_instance_lists_the_problems(self, name, connector_class):
        with pytest.raises(ConnectorConfigError) as caught:
            next(iter(connector_class({"no_such_option": 1}, source_name="broken-source")))
        assert "no_such_option" in str(caught.value)
        assert pickle.loads(pickle.dumps(caught.value)).problems == caught.value.problems

    def test_the_sample_checks_ok_and_yields_source_records(self, name, connector_class):
        with connector_class.sample() as sample:
            result = sample.check()
            assert result.ok, result.render()
            records = iter(sample)
            first = next(records)
            rest = list(records)
        for record in [first, *rest]:
            assert isinstance(record, SourceRecord)
            assert record.key and record.fields
        assert len({record.key for record in [first, *rest]}) == 1 + len(rest)
