"""What the database holds for one source, as a sync compares it: the snapshot.

Loaded in bulk before the planner reads the export (``adapter.sync_plan``): every
household, cardholder and pass of the source, one small object a row, and the
pass numbers of the other sources. A nightly sync holds it for every cardholder
of the city, so it is kept compact: hashes as bytes, dates and statuses as
shared objects, a pass's cardholder id as its cardholder's own int.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from adapter.bulk_read import driver_rows
from adapter.models import Cardholder, HolderStatus, Household, Pass, PassState, SyncRun, SyncStatus

# A pass in one of these states is finished with: it no longer counts, goes missing or comes back by itself.
TERMINAL_PASS_STATES = (PassState.REPLACED, PassState.INACTIVE)


@dataclass(slots=True)
class KnownHolder:
    id: int
    # The content hash and the BSN blind index as the bytes their hex digits spell (see digest): a nightly
    # sync holds one of these for every cardholder of the city.
    content_hash: bytes | None
    status: HolderStatus
    missing_since: date | None
    bsn_index: bytes | None = None
    # Set by the planner when the export names this cardholder: how its first line was judged.
    outcome: str | None = None


@dataclass(slots=True)
class KnownPass:
    id: int
    cardholder_id: int
    status: PassState
    valid_from: date | None
    valid_until: date | None
    missing_since: date | None
    replaced_by_id: int | None
    # Set by the planner when the export carries this pass: the key of the line that does.
    read_as: str | None = None


@dataclass
class Snapshot:
    """What the database holds for one source, for one planner: it marks the rows the export names."""

    source: str
    households: dict[str, int]
    holders: dict[str, KnownHolder]
    passes: dict[str, KnownPass]
    foreign_pass_numbers: frozenset[str]
    last_good_records: int | None
    # BSN blind index (as bytes) -> the key of the cardholder of this source that holds it (the oldest, if
    # several do).
    holder_by_bsn: dict[bytes, str] = field(default_factory=dict)
    # BSN blind indexes that several stored cardholders of this source hold (stored before that was refused).
    shared_bsns: frozenset[bytes] = frozenset()

    @property
    def known_passes(self) -> int:
        return sum(1 for known in self.passes.values() if known.status not in TERMINAL_PASS_STATES)


def load_snapshot(session: Session, source: str) -> Snapshot:
    """Every stored household, cardholder and pass of ``source``, in compact form (one small object a row).

    Read from the driver's cursor, streamed (``adapter.bulk_read``), with statuses and dates taken raw
    and turned into shared objects here: SQLAlchemy's rows and per-value conversion cost more than the
    comparison the snapshot is for. Most passes share one pass year, so a date is one object.
    """
    connection = session.connection()
    households = dict(driver_rows(connection, select(Household.source_key, Household.id)
                                  .where(Household.source == source)))
    day = _SharedDates()
    holder_states = {state.value: state for state in HolderStatus}
    pass_states = {state.value: state for state in PassState}
    holders: dict[str, KnownHolder] = {}
    holder_by_bsn: dict[bytes, str] = {}
    shared_bsns: set[bytes] = set()
    # In no particular order: an ORDER BY makes the database sort every cardholder of the source first.
    for key, holder_id, content_hash, status, missing_since, bsn_index in driver_rows(
            connection, select(Cardholder.source_key, Cardholder.id, Cardholder.content_hash, Cardholder.status,
                               Cardholder.missing_since, Cardholder.bsn_index).where(Cardholder.source == source)):
        bsn_index = digest(bsn_index)
        holders[key] = KnownHolder(holder_id, digest(content_hash), holder_states[status],
                                   day[missing_since], bsn_index)
        if bsn_index is not None:
            owner = holder_by_bsn.setdefault(bsn_index, key)
            if owner != key:
                shared_bsns.add(bsn_index)
                if holders[owner].id > holder_id:
                    holder_by_bsn[bsn_index] = key  # the oldest of them
    # Row id -> that same id object, which each of its passes then shares instead of an int of its own.
    ours = {known.id: known.id for known in holders.values()}
    passes: dict[str, KnownPass] = {}
    foreign: list[str] = []
    # Every pass in one scan, no join: ours by their cardholder, the others' numbers are refused in the export.
    for number, pass_id, holder_id, status, valid_from, valid_until, missing_since, replaced_by in driver_rows(
            connection, select(Pass.pass_number, Pass.id, Pass.cardholder_id, Pass.status, Pass.valid_from,
                               Pass.valid_until, Pass.missing_since, Pass.replaced_by_id)):
        holder_id = ours.get(holder_id)
        if holder_id is not None:
            passes[number] = KnownPass(pass_id, holder_id, pass_states[status], day[valid_from],
                                       day[valid_until], day[missing_since], replaced_by)
        else:
            foreign.append(number)
    last_good = session.execute(
        select(SyncRun.records_read).where(SyncRun.source == source, SyncRun.status == SyncStatus.SUCCEEDED)
        .order_by(SyncRun.id.desc()).limit(1)
    ).scalar_one_or_none()
    return Snapshot(source, households, holders, passes, frozenset(foreign), last_good, holder_by_bsn,
                    frozenset(shared_bsns))


def digest(hex_digits: str | None) -> bytes | None:
    """A stored hash or blind index as the bytes its hex digits spell: half the memory of the text. A value
    that is not hex (none is written so) stays text, which equals no digest: its row is taken as changed."""
    if hex_digits is None:
        return None
    try:
        return bytes.fromhex(hex_digits)
    except ValueError:
        return hex_digits  # type: ignore[return-value]


class _SharedDates(dict):
    """Raw date value (ISO text from SQLite, a date from PostgreSQL) -> one shared ``date`` per distinct day.
    A plain dictionary look-up per value: the loader does three for every pass."""

    def __init__(self) -> None:
        super().__init__({None: None})

    def __missing__(self, raw: object) -> date:
        day = self[raw] = raw if isinstance(raw, date) else date.fromisoformat(raw)  # type: ignore[arg-type]
        return day
