"""The records that flow from a source system into the sync engine.

A connector yields ``SourceRecord`` objects: raw rows or nested documents, as
the source system sends them. The mapping turns each into zero or more
``CardholderRecord`` objects (one per pass), the canonical shape the sync engine
upserts. Nothing here knows which source system the record came from.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
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
    fields: Mapping[str, Any]
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

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)
