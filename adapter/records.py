"""The records that flow from a source system into the sync engine.

A connector yields ``SourceRecord`` objects: raw rows or nested documents, as
the source system sends them. The mapping turns each into zero or more
``CardholderRecord`` objects (one per pass), the canonical shape the sync engine
upserts. Nothing here knows which source system the record came from.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from datetime import date
from typing import Any


class PassStatus(str, enum.Enum):
    ACTIVE = "active"
    BLOCKED = "blocked"
    EXPIRED = "expired"
    REPLACED = "replaced"


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One raw record as a connector read it.

    ``key`` identifies the record in a sync report without personal data:
    ``"line 12"`` for a CSV row, ``"page 3 item 7"`` for a SOAP answer.
    ``fields`` holds the raw values: column name -> text for a CSV row, a
    nested dict/list structure for SOAP and JSON documents.
    """

    key: str
    # Left out of repr(): the raw values are a BSN, names and a birth date, which no mask recognises once a
    # record is put in a message (a plug-in connector's error, a debug line). ``key`` says which record it is.
    fields: Mapping[str, Any] = field(repr=False)
    # Structural problems the connector saw (e.g. "row has 3 columns, the
    # header has 6"), worded without values; the mapping step rejects the
    # record with these reasons instead of guessing.
    problems: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CardholderRecord:
    """One cardholder with one pass, in canonical form, after mapping.

    Every identifier is text: pass numbers and BSNs carry leading zeros.
    """

    source_key: str  # where it came from, for reports (never personal data)
    household_id: str
    cardholder_id: str
    pass_number: str
    # Personal fields are left out of repr(): a record in an exception message or a log line names no one.
    bsn: str | None = field(default=None, repr=False)
    first_names: str | None = field(default=None, repr=False)
    initials: str | None = field(default=None, repr=False)
    surname_prefix: str | None = field(default=None, repr=False)
    surname: str | None = field(default=None, repr=False)
    birth_date: date | None = field(default=None, repr=False)
    valid_from: date | None = None
    valid_until: date | None = None
    pass_status: PassStatus = PassStatus.ACTIVE
    # The number of the (lost) pass this pass replaces, if the source says so.
    replaces_pass_number: str | None = None
    # True for a child's pass (e.g. PASS/GPASS categorie_code "K"); None when unknown.
    is_child: bool | None = None


@dataclass(frozen=True, slots=True)
class RejectedRecord:
    """A record that could not be mapped or failed validation.

    ``reason`` names the field and the rule, never the value itself: the value
    may be a BSN or a name.
    """

    source_key: str
    reasons: tuple[str, ...] = field(default_factory=tuple)
    # The line's pass number when that field itself was valid (validation rejected another): the sync's guard
    # then knows which stored pass the line still names, whose absence it would otherwise count a second time.
    # Never stored, shown or logged.
    pass_number: str | None = field(default=None, repr=False, compare=False)

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)


def cardholder_builder(field_names: Sequence[str]) -> Callable[[str, Sequence[Any]], CardholderRecord]:
    """A constructor for records whose values come in ``field_names`` order; the rest take defaults.

    The mapping builds one record per pass per night. A frozen dataclass's
    ``__init__`` sets each field through ``object.__setattr__`` by keyword; this
    sets the slots directly and is about a third cheaper. The result is the same
    frozen record ``CardholderRecord(source_key=..., **values)`` gives.
    """
    slots = {item.name: item for item in fields(CardholderRecord)}
    unknown = [name for name in field_names if name not in slots or name == "source_key"]
    if unknown or len(set(field_names)) != len(field_names):
        raise ValueError(f"not canonical fields, or given twice: {', '.join(unknown) or field_names}")
    setters = tuple(getattr(CardholderRecord, name).__set__ for name in field_names)
    defaults = []
    for name, item in slots.items():
        if name == "source_key" or name in field_names:
            continue
        if item.default is not MISSING:
            defaults.append((getattr(CardholderRecord, name).__set__, item.default))
        else:
            raise ValueError(f"{name} has no default and must be given")
    set_source_key = CardholderRecord.source_key.__set__  # type: ignore[attr-defined]
    new = object.__new__

    def build(source_key: str, values: Sequence[Any]) -> CardholderRecord:
        record = new(CardholderRecord)
        set_source_key(record, source_key)
        for set_field, value in zip(setters, values):
            set_field(record, value)
        for set_field, default in defaults:
            set_field(record, default)
        return record

    return build
