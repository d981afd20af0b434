"""The contract every connector keeps, as checks a connector's own package can run in its tests.

``tests/connectors/test_contract.py`` runs them over every connector installed in the environment; a
plug-in's package runs them over its own class, so its CI finds a broken contract before a municipality's
nightly sync does::

    from adapter.connector_contract import assert_keeps_the_contract

    def test_keeps_the_connector_contract():
        assert_keeps_the_contract(JsonLinesConnector)

Each check raises ``AssertionError`` saying what the connector does wrong.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator, Mapping

from pydantic import BaseModel

from adapter.connector import CheckResult, Connector, ConnectorConfigError
from adapter.sources import held_to_contract, run_check

CHECKS = ("declares_what_it_is", "checks_bad_options_without_raising", "refuses_to_read_bad_options",
          "sample_checks_ok_and_yields_records")


def assert_keeps_the_contract(connector_class: type[Connector]) -> None:
    """Every check of this module, in order."""
    for name in CHECKS:
        globals()[f"assert_{name}"](connector_class)


def assert_declares_what_it_is(connector_class: type[Connector]) -> None:
    assert isinstance(connector_class, type) and issubclass(connector_class, Connector), \
        f"{connector_class!r} is not a subclass of adapter.connector.Connector"
    options_model = getattr(connector_class, "options_model", None)
    assert isinstance(options_model, type) and issubclass(options_model, BaseModel), \
        f"{connector_class.__name__}.options_model is not a pydantic model (subclass ConnectorOptions)"
    assert connector_class.description, f"{connector_class.__name__}.description is empty ('connectors list' shows it)"


def assert_checks_bad_options_without_raising(connector_class: type[Connector]) -> None:
    misconfigured = connector_class({"no_such_option": 1}, source_name="broken-source")
    result = run_check(misconfigured, "contract")
    assert result is not None and isinstance(result, CheckResult)
    text = result.render()
    assert "stopped with" not in text and "not an adapter.connector.CheckResult" not in text, \
        f"check() must report, never raise or return something else:\n{text}"
    assert not result.ok, f"check() passed options with an unknown key:\n{text}"
    assert [step.name for step in result.steps] == ["settings", "connection", "credentials"], text
    assert result.steps[0].ok is False, f"the settings step must fail on an unknown option:\n{text}"
    assert "broken-source" in text and "no_such_option" in text, \
        f"the failed settings step must name the source and the bad key:\n{text}"


def assert_refuses_to_read_bad_options(connector_class: type[Connector]) -> None:
    misconfigured = connector_class({"no_such_option": 1}, source_name="broken-source")
    try:
        next(iter(misconfigured.records()))
    except ConnectorConfigError as error:
        assert "no_such_option" in str(error), f"the error does not name the bad key: {error}"
        # The sync reads in a worker process: its errors cross to the engine pickled.
        assert pickle.loads(pickle.dumps(error)).problems == error.problems
    else:
        raise AssertionError("records() read with an unknown option instead of raising ConnectorConfigError "
                             "(use self.options, which raises it)")


def assert_sample_checks_ok_and_yields_records(connector_class: type[Connector]) -> None:
    """The sample (``Connector.sample()``, the connector's bundled data) passes its check and yields records
    as the sync engine checks them (``adapter.sources.held_to_contract``), each key told from every other."""
    with connector_class.sample() as sample:
        result = run_check(sample, "contract")
        assert result.ok, result.render()
        records = list(held_to_contract(sample))
    assert records, "the sample yields no records"
    for record in records:
        assert record.fields or record.problems, f"record {record.key!r} has neither fields nor problems"
    keys = [record.key for record in records]
    assert len(set(keys)) == len(keys), "two of the sample's records have the same key"
    for record in records:
        quoted = [value for value in _values_in(record.fields) if len(value) >= 4 and value in record.key]
        # The key is stored in plain text with the run's outcomes and shown on the dashboard; the engine can
        # only refuse a BSN's run of digits at run time, not a name or a household number.
        assert not quoted, f"record {record.key!r} has one of its own values in its key (a key is a label such " \
            "as 'line 12' or 'page 3 item 7', never a value from the record)"


def _values_in(fields: object) -> Iterator[str]:
    """Every scalar value in a record's (nested) fields, as text."""
    if isinstance(fields, Mapping):
        for value in fields.values():
            yield from _values_in(value)
    elif isinstance(fields, (list, tuple)):
        for value in fields:
            yield from _values_in(value)
    elif fields is not None and not isinstance(fields, bool):
        yield str(fields)
