"""Which connectors exist: found through entry points, built-ins included.

Every connector, including the ones shipped in ``connectors/``, registers under
the entry-point group ``stadspas_adapter.connectors``; a third-party package
adds one by declaring an entry point, with no change to this repository. A
name registered twice is an error rather than a silent override: two packages
claiming ``soap`` would otherwise decide by install order which one reads a
municipality's cardholders.

The default registry loads a connector's module only when that connector is
asked for: a nightly CSV sync need not import zeep and lxml for the SOAP
connector it does not use. Duplicate names are still refused at discovery
(they are names, not classes); a broken plug-in names itself when it is used.
"""

from __future__ import annotations

import functools
import threading
import types
from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points

from pydantic import BaseModel

from adapter.connector import Connector

ENTRY_POINT_GROUP = "stadspas_adapter.connectors"


class RegistryError(Exception):
    """A connector could not be registered or found."""


class DuplicateConnectorError(RegistryError):
    pass


class UnknownConnectorError(RegistryError):
    pass


class ConnectorRegistry:
    """Connector name -> connector class. Build a fresh one in tests and inject it."""

    def __init__(self) -> None:
        self._connectors: dict[str, type[Connector]] = {}
        # Discovered but not yet imported: name -> entry point, loaded by get() or items().
        self._deferred: dict[str, EntryPoint] = {}
        # The scheduler's job threads can ask for the same connector at once: one imports it, the other waits
        # (and sees it registered, not missing). A failed import keeps its entry, so every night names the error.
        self._loading = threading.RLock()

    def register(self, name: str, connector_class: type[Connector]) -> None:
        _refuse_unusable(name, connector_class)
        self._refuse_duplicate(name, connector_class.__module__)
        self._connectors[name] = connector_class

    def get(self, name: str) -> type[Connector]:
        if name in self._deferred:
            self._load_deferred(name)
        try:
            return self._connectors[name]
        except KeyError:
            known = ", ".join(self.names()) or "(none installed)"
            raise UnknownConnectorError(
                f"unknown connector '{name}'; known connectors: {known}. "
                "Check the 'connector' key of the source, or install the package that provides it"
            ) from None

    def names(self) -> list[str]:
        return sorted([*self._connectors, *self._deferred])

    def items(self) -> list[tuple[str, type[Connector]]]:
        for name in list(self._deferred):
            self._load_deferred(name)
        return sorted(self._connectors.items())

    def __contains__(self, name: object) -> bool:
        return name in self._connectors or name in self._deferred

    def load_entry_points(self, found: Iterable[EntryPoint] | None = None) -> ConnectorRegistry:
        """Register every entry point of the group (or the ones given, for tests)."""
        if found is None:
            found = entry_points(group=ENTRY_POINT_GROUP)
        for entry_point in found:
            self._load(entry_point)
        return self

    def discover_entry_points(self, found: Iterable[EntryPoint] | None = None) -> ConnectorRegistry:
        """Note every entry point of the group by name (duplicates refused); import each on first use."""
        if found is None:
            found = entry_points(group=ENTRY_POINT_GROUP)
        for entry_point in found:
            self._refuse_duplicate(entry_point.name, entry_point.value)
            self._deferred[entry_point.name] = entry_point
        return self

    def _refuse_duplicate(self, name: str, second: str) -> None:
        if name in self._connectors or name in self._deferred:
            first = self._connectors[name].__module__ if name in self._connectors else self._deferred[name].value
            raise DuplicateConnectorError(
                f"connector '{name}' is registered twice ({first} and {second}); "
                "uninstall one of the packages or give one a different entry-point name"
            )

    def _load_deferred(self, name: str) -> None:
        with self._loading:
            entry_point = self._deferred.get(name)
            if entry_point is None:
                return  # another thread loaded it while this one waited
            connector_class = self._import(entry_point)
            # Refused before its entry is let go: the next use names what is wrong with it again, not "unknown
            # connector, install the package that provides it" about a package that is installed.
            _refuse_unusable(name, connector_class)
            del self._deferred[name]
            self._connectors[name] = connector_class

    def _load(self, entry_point: EntryPoint) -> None:
        self.register(entry_point.name, self._import(entry_point))

    @staticmethod
    def _import(entry_point: EntryPoint) -> type[Connector]:
        try:
            return entry_point.load()  # type: ignore[no-any-return]
        except Exception as exc:  # a broken plug-in must name itself
            raise RegistryError(
                f"connector '{entry_point.name}' ({entry_point.value}) could not be "
                f"loaded: {exc}. Reinstall or remove the package that provides it"
            ) from exc


def _refuse_unusable(name: str, connector_class: object) -> None:
    """Refuse, naming it, what an entry point or a caller hands in that no source could use: not a connector class
    at all (a function, a module: ``pkg.mod`` without its ``:Class``), or one that lacks what every use needs."""
    if not (isinstance(connector_class, type) and issubclass(connector_class, Connector)):
        # Named by module and name: a function's repr is only its memory address, which names no package. A module
        # has a name but no __module__.
        pointed_at = getattr(connector_class, "__name__", None) if isinstance(connector_class, types.ModuleType) \
            else f"{getattr(connector_class, '__module__', '?')}." \
                 f"{getattr(connector_class, '__qualname__', type(connector_class).__name__)}"
        raise RegistryError(
            f"connector '{name}' points at {pointed_at}, which is not a subclass of "
            "adapter.connector.Connector. Report this to the maintainers of the package that provides it"
        )
    missing = _what_it_lacks(connector_class)
    if missing:
        raise RegistryError(
            f"connector '{name}' ({connector_class.__module__}.{connector_class.__qualname__}) {missing}, so "
            "no source can use it. Report this to the maintainers of the package that provides it"
        )


def _what_it_lacks(connector_class: type[Connector]) -> str | None:
    """What a plug-in's class lacks that every use of it needs, said at registration: without it, ``config
    check`` ended in a traceback (losing every other problem it had found) and the sync in a bare TypeError."""
    unimplemented = sorted(getattr(connector_class, "__abstractmethods__", ()))
    if unimplemented:
        return f"does not implement {', '.join(f'{method}()' for method in unimplemented)}"
    options_model = getattr(connector_class, "options_model", None)
    if not (isinstance(options_model, type) and issubclass(options_model, BaseModel)):
        return "declares no options_model (a subclass of adapter.connector.ConnectorOptions)"
    return None


@functools.cache
def default_registry() -> ConnectorRegistry:
    """The registry of installed connectors, discovered once per process, each imported on first use."""
    return ConnectorRegistry().discover_entry_points()
