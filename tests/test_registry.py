import contextlib
import re
from importlib.metadata import EntryPoint

import pytest

from adapter.connector import CheckBuilder, Connector, ConnectorOptions
from adapter.records import SourceRecord
from adapter.registry import (
    ConnectorRegistry, DuplicateConnectorError, RegistryError, UnknownConnectorError,
)
from connectors.csv_file import CsvConnector


class ThirdPartyOptions(ConnectorOptions):
    count: int = 2


class ThirdPartyConnector(Connector):
    """What a package outside this repository would ship."""

    options_model = ThirdPartyOptions
    description = "made up for the registry tests"

    def records(self):
        for number in range(self.options.count):
            yield SourceRecord(f"item {number}", {"pasnummer": f"{number:010d}"})

    def check(self):
        check = CheckBuilder(self.source_name, "third-party")
        check.passed("settings", "fine")
        return check.result()

    @classmethod
    @contextlib.contextmanager
    def sample(cls):
        yield cls({})


def entry_point(name, value):
    return EntryPoint(name=name, value=value, group="stadspas_adapter.connectors")


def test_a_third_party_entry_point_registers_without_changes_here():
    registry = ConnectorRegistry().load_entry_points([
        entry_point("csv", "connectors.csv_file:CsvConnector"),
        entry_point("acme", "tests.test_registry:ThirdPartyConnector"),
    ])
    assert registry.names() == ["acme", "csv"]
    assert registry.get("acme") is ThirdPartyConnector
    assert [record.key for record in registry.get("acme")({"count": 2})] == ["item 0", "item 1"]


def test_a_name_registered_twice_is_an_error():
    registry = ConnectorRegistry()
    registry.register("csv", CsvConnector)
    with pytest.raises(DuplicateConnectorError, match="'csv' is registered twice"):
        registry.register("csv", ThirdPartyConnector)
    with pytest.raises(DuplicateConnectorError):
        ConnectorRegistry().load_entry_points([
            entry_point("csv", "connectors.csv_file:CsvConnector"),
            entry_point("csv", "tests.test_registry:ThirdPartyConnector"),
        ])


def test_an_unknown_name_lists_the_known_connectors():
    registry = ConnectorRegistry()
    registry.register("csv", CsvConnector)
    registry.register("acme", ThirdPartyConnector)
    with pytest.raises(UnknownConnectorError) as caught:
        registry.get("sopa")
    assert "unknown connector 'sopa'; known connectors: acme, csv" in str(caught.value)


def test_a_broken_plugin_names_itself():
    with pytest.raises(RegistryError, match="'broken'.*could not be loaded"):
        ConnectorRegistry().load_entry_points([entry_point("broken", "no_such_package.module:Thing")])


def test_only_connector_classes_register():
    with pytest.raises(RegistryError, match="not a subclass"):
        ConnectorRegistry().register("odd", dict)


def _a_function():
    """What an entry point names by mistake: the module's factory instead of its class."""


def test_an_entry_point_at_a_function_is_named_by_its_module_not_its_address():
    registry = ConnectorRegistry().discover_entry_points([entry_point("acme", "tests.test_registry:_a_function")])
    with pytest.raises(RegistryError) as raised:
        registry.get("acme")
    assert "'acme' points at tests.test_registry._a_function, which is not a subclass" in str(raised.value)
    assert " at 0x" not in str(raised.value)


def test_an_entry_point_at_a_module_is_refused_by_name_each_time_it_is_asked_for():
    """`pkg.mod` without its `:Class`, a common slip: the module has no __module__, and register() read it first, so
    the refusal was an AttributeError traceback, and its entry lost: the next look-up said "unknown connector,
    install the package that provides it" about a package that is installed."""
    registry = ConnectorRegistry().discover_entry_points([entry_point("acme", "connectors.csv_file")])
    for _ in range(2):
        with pytest.raises(RegistryError) as raised:
            registry.get("acme")
        assert "'acme' points at connectors.csv_file, which is not a subclass" in str(raised.value)
    assert "acme" in registry.names()


def test_the_installed_entry_points_include_the_built_ins():
    registry = ConnectorRegistry().load_entry_points()
    assert {"csv", "rest", "soap"} <= set(registry.names())


def test_discovery_imports_a_connector_only_when_it_is_asked_for():
    registry = ConnectorRegistry().discover_entry_points([
        entry_point("csv", "connectors.csv_file:CsvConnector"),
        entry_point("broken", "no_such_package.module:Thing"),
    ])
    assert registry.names() == ["broken", "csv"]
    assert "broken" in registry
    assert registry.get("csv") is CsvConnector  # the broken one is never imported for a csv source
    with pytest.raises(RegistryError, match="'broken'.*could not be loaded"):
        registry.get("broken")


def test_discovery_refuses_a_name_twice_without_importing_either():
    with pytest.raises(DuplicateConnectorError, match="'csv' is registered twice"):
        ConnectorRegistry().discover_entry_points([
            entry_point("csv", "no_such_package.one:Thing"),
            entry_point("csv", "no_such_package.two:Thing"),
        ])


def test_the_default_registry_lists_every_installed_connector():
    from adapter.registry import default_registry

    assert {"csv", "rest", "soap"} <= set(default_registry().names())
    assert {"csv", "rest", "soap"} <= {name for name, _class in ConnectorRegistry().discover_entry_points().items()}


def test_two_threads_asking_for_a_connector_while_it_imports_both_get_it(monkeypatch):
    """The scheduler's job threads can start two syncs of one connector at the same minute."""
    import threading
    import time

    slow = entry_point("slow", "connectors.csv_file:CsvConnector")
    original_load = EntryPoint.load

    def slow_load(self):
        time.sleep(0.2)  # zeep and lxml take about this long to import
        return original_load(self)

    monkeypatch.setattr(EntryPoint, "load", slow_load)
    registry = ConnectorRegistry().discover_entry_points([slow])
    results: list[object] = []

    def ask():
        try:
            results.append(registry.get("slow"))
        except Exception as exc:  # noqa: BLE001 - the failure is the result under test
            results.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [CsvConnector, CsvConnector]


def test_a_broken_plugin_names_its_error_every_time_it_is_asked_for():
    registry = ConnectorRegistry().discover_entry_points([entry_point("broken", "no_such_package.module:Thing")])
    for _ in range(2):
        with pytest.raises(RegistryError, match="'broken'.*could not be loaded"):
            registry.get("broken")


class _ForgetsItsCheck(Connector):
    options_model = ThirdPartyOptions
    description = "implements records() only"

    def records(self):
        yield from ()


class _DeclaresNoOptions(Connector):
    description = "no options_model"

    def records(self):
        yield from ()

    def check(self):
        return CheckBuilder(self.source_name, "no-options").result()


@pytest.mark.parametrize("connector_class, said", [
    (_ForgetsItsCheck, "tests.test_registry._ForgetsItsCheck) does not implement check()"),
    (_DeclaresNoOptions, "tests.test_registry._DeclaresNoOptions) declares no options_model"),
])
def test_a_class_no_source_could_use_is_refused_naming_what_it_lacks(connector_class, said):
    """Registered, such a class ended `config check` in a traceback (AttributeError on options_model) that hid
    every other problem, and `connectors check` and the sync in a bare TypeError."""
    with pytest.raises(RegistryError, match=re.escape(said)):
        ConnectorRegistry().register("acme", connector_class)
    registry = ConnectorRegistry().discover_entry_points([
        entry_point("acme", f"tests.test_registry:{connector_class.__name__}")])
    for _ in range(2):  # the second source that names it, in the same `config check`, hears the same
        with pytest.raises(RegistryError, match="Report this to the maintainers"):
            registry.get("acme")
    assert "acme" in registry.names()
