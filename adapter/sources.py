"""What the sync engine calls: a configured source -> canonical records.

``iter_mapped`` streams: connector record -> mapping -> validation, one source
record at a time, so a million-row export never sits in memory. ``read_source``
does the same in a worker process (``adapter.read_ahead``): what the nightly job
and the sync command use, so that the reading runs beside the planning.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Protocol

from adapter.connector import CheckBuilder, CheckResult, Connector, ConnectorError, redact
from adapter.redaction import holds_a_long_number
from adapter.mapping import CompiledMapping, load_mapping
from adapter.read_ahead import ReadAhead
from adapter.records import CardholderRecord, RejectedRecord, SourceRecord
from adapter.registry import ConnectorRegistry, default_registry
from adapter.validation import validate_record


class SourceSettingsLike(Protocol):
    """The fields of ``adapter.settings.SourceSettings`` this module reads."""

    connector: str
    mapping: Path
    options: dict[str, Any]


def open_source(
    source_settings: SourceSettingsLike,
    registry: ConnectorRegistry | None = None,
    *,
    source_name: str = "(unnamed)",
    base_dir: Path | None = None,
) -> tuple[Connector, CompiledMapping]:
    """Build the source's connector and load its mapping, before any I/O to the source.

    Raises ``UnknownConnectorError`` (naming the known connectors) or
    ``MappingError`` (listing every problem). Invalid connector options are
    reported by ``connector.check()`` and raised by ``connector.records()``.
    ``base_dir`` resolves relative paths in the options (the configuration
    file's directory); the current directory when not given.
    """
    registry = registry or default_registry()
    base_dir = base_dir or getattr(source_settings, "base_dir", None)
    connector_class = registry.get(source_settings.connector)
    mapping = load_mapping(source_settings.mapping)
    return build_connector(connector_class, source_settings.options, source_name=source_name,
                           base_dir=base_dir), mapping


def build_connector(connector_class: type[Connector], options: dict[str, Any], *, source_name: str,
                    base_dir: Path | None = None) -> Connector:
    """``connector_class`` set up from the source's options. A plug-in whose constructor raises (instead of
    reporting its options in ``check()`` and ``records()``, as the contract asks) is named with where it
    stopped: its error crossed from the reading worker as a "fault of ours", traceback and all."""
    try:
        return connector_class(options, source_name=source_name, base_dir=base_dir)
    except ConnectorError:
        raise
    except (Exception, SystemExit) as error:
        raise ConnectorError(
            source_name, f"the connector {connector_class.__module__}.{connector_class.__qualname__} stopped with "
            f"{_class_and_place(connector_class, error)} while it was set up from the source's options (its "
            "message is left out: a connector may put a secret it read in it)",
            "Check the source's options against the connector's documentation (`connectors check` does too); if "
            "they are right, report this to the maintainers of the package that provides the connector. Nothing "
            "was read or written") from None


def iter_mapped(
    source_settings: SourceSettingsLike,
    registry: ConnectorRegistry | None = None,
    *,
    source_name: str = "(unnamed)",
    base_dir: Path | None = None,
    today: date | None = None,
) -> Iterator[CardholderRecord | RejectedRecord]:
    """Every record of the source, mapped and validated, one at a time.

    Connector errors (source unreachable, credentials refused) propagate as
    ``adapter.connector.ConnectorError``: the sync must stop, not conclude that
    every cardholder disappeared.
    """
    connector, mapping = open_source(
        source_settings, registry, source_name=source_name, base_dir=base_dir
    )
    yield from map_records(connector, mapping, today=today)


@dataclass(frozen=True)
class MappedSource:
    """A configured source as a worker process can open it by itself (``iter_mapped`` there)."""

    source_settings: SourceSettingsLike
    source_name: str
    base_dir: Path | None = None
    today: date | None = None

    def open(self) -> Iterator[CardholderRecord | RejectedRecord]:
        return iter_mapped(self.source_settings, source_name=self.source_name, base_dir=self.base_dir,
                           today=self.today)


def read_source(source_settings: SourceSettingsLike, *, source_name: str, base_dir: Path | None = None,
                stall_seconds: float | None = None) -> ReadAhead:
    """The source's records as ``iter_mapped`` yields them, read by a worker process that starts at
    ``start()`` or at the first record. Use it as a context manager: leaving it stops the worker. A source
    that sends nothing for ``stall_seconds`` fails the reading (``read_ahead.SourceReadingStalled``)."""
    return ReadAhead(MappedSource(source_settings, source_name, base_dir), stall_seconds=stall_seconds)


def map_records(
    connector: Connector, mapping: CompiledMapping, *, today: date | None = None
) -> Iterator[CardholderRecord | RejectedRecord]:
    reference_today = today or date.today()
    columns_checked = not mapping.columns_read or bool(mapping.records_paths)
    for source_record in held_to_contract(connector):
        if not columns_checked and not source_record.problems:
            _require_columns(connector, mapping, source_record.fields)
            columns_checked = True
        for mapped in mapping.apply(source_record):
            if isinstance(mapped, CardholderRecord):
                yield validate_record(mapped, reference_today)
            else:
                yield mapped


# A record's key is a short label ("line 12", "page 3 item 7"); the sync stores it, with the mapping's
# "lid[1].pas[0]" after it, in a column of 200 characters.
MAX_KEY_CHARS = 120


def held_to_contract(connector: Connector) -> Iterator[SourceRecord]:
    """The connector's records, each checked for what the mapping and the sync's report rely on.

    Connectors come from other packages too. One that yields a plain dict failed deep in the mapping
    ("'dict' object has no attribute 'problems'"), naming neither the connector nor what it did wrong; one
    that gives every record the same key made a report whose rejected lines nobody can find.
    """
    previous_key = None
    try:
        for record in connector.records():
            if not isinstance(record, SourceRecord):
                raise _broken(connector, f"yielded a {type(record).__name__}, not an adapter.records.SourceRecord")
            key = record.key
            if type(key) is not str or not key:
                raise _broken(connector, "yielded a record whose key is not text (or is empty)")
            if len(key) > MAX_KEY_CHARS:
                raise _broken(connector, f"yielded a record key of {len(key)} characters (at most {MAX_KEY_CHARS}: "
                              "a label such as 'line 12', never the record's values)")
            if holds_a_long_number(key):
                # Keys are stored in plain text with the run's outcomes and shown on the dashboard. The rule is the
                # log's (adapter.redaction): 8 digits and more, a BSN that lost its leading zero included. No line
                # or page number of an export comes near.
                raise _broken(connector, f"yielded the key '{redact(key)}', which holds a run of 8 or more digits, "
                              "as a BSN or pass number has (a key is a label such as 'line 12', never a value)")
            if record.problems and not _are_texts(record.problems):
                raise _broken(connector, "yielded a record whose problems are not a tuple of texts (write "
                              "problems=(\"...\",): a bare text was read as one problem per letter)")
            if key == previous_key:
                # Only neighbours are compared: a table of every key would grow with the source.
                raise _broken(connector, f"yielded the key '{redact(key)}' for two records in a row (each "
                              "record's key must tell it from the others)")
            previous_key = key
            yield record
    except ConnectorError:
        raise  # worded for the operator, without values, by the connector itself
    except (Exception, SystemExit) as error:
        # Any other error's text is the source's or a library's: a ValueError quoting a name, a KeyError that is a
        # BSN. Its class and where it was raised are what the connector's maintainers need. A SystemExit is caught
        # too: crossing from the reading worker, it ended the sync command with the status it carried, 0 for a
        # failed night.
        raise _broken(connector, f"stopped with {_class_and_place(type(connector), error)} (its message is left out: "
                      "it may quote a cardholder's data)") from None


def _are_texts(problems: object) -> bool:
    return isinstance(problems, (tuple, list)) and all(isinstance(problem, str) and problem for problem in problems)


def run_check(connector: Connector, connector_name: str) -> CheckResult:
    """``connector.check()``, which must never raise; for a plug-in's that does, a failed step saying so.

    A check that raised ended ``connectors check`` in a crash report whose last line was the exception's text,
    names and all, instead of the FAIL line an operator reads.
    """
    try:
        result = connector.check()
    except (Exception, SystemExit) as error:
        check = CheckBuilder(connector.source_name, connector_name)
        check.failed_with("settings", f"the connector's check stopped with {_class_and_place(type(connector), error)} "
                          "(its message is left out: it may quote a cardholder's data); report this to the "
                          "maintainers of the package that provides the connector")
        return check.result()
    if not isinstance(result, CheckResult):
        check = CheckBuilder(connector.source_name, connector_name)
        check.failed_with("settings", f"the connector's check returned a {type(result).__name__}, not an "
                          "adapter.connector.CheckResult; report this to the maintainers of its package")
        return check.result()
    return result


def _class_and_place(connector_class: type[Connector], error: BaseException) -> str:
    """``ValueError at jsonl.py:42``: the error's class, an OSError's system words, and the last line of the
    connector's own module it passed through (else the line that raised it)."""
    frames = traceback.extract_tb(error.__traceback__)
    module_file = getattr(sys.modules.get(connector_class.__module__), "__file__", None)
    own = [frame for frame in frames if module_file and frame.filename == module_file]
    place = (own or frames)[-1] if frames else None
    words = f" ({error.strerror})" if isinstance(error, OSError) and error.strerror else ""
    where = f" at {Path(place.filename).name}:{place.lineno}" if place else ""
    return f"{type(error).__name__}{words}{where}"


def _broken(connector: Connector, what_it_did: str) -> ConnectorError:
    connector_class = type(connector)
    return ConnectorError(connector.source_name,
                          f"the connector {connector_class.__module__}.{connector_class.__qualname__} {what_it_did}",
                          "Report this to the maintainers of the package that provides the connector; nothing was "
                          "written")


def _require_columns(connector: Connector, mapping: CompiledMapping, fields: dict[str, Any]) -> None:
    """Refuse a flat row (a CSV export's) without a column the mapping reads, judged on the first row: a renamed
    header column ("Bsn" for "BSN") would otherwise map every record with that field empty, saying nothing."""
    missing = [column for column in mapping.columns_read if column not in fields]
    if missing:
        raise ConnectorError(connector.source_name, f"the source has no column {', '.join(missing)}, which the "
                             f"mapping {Path(mapping.origin).name} reads",
                             "Compare the export's header with the mapping's column names (a renamed or missing "
                             "column?) and correct either, then run again")
