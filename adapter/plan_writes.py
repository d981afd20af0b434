"""The writes a sync plans, and where they wait for the guard: on disk, not in memory.

A first sync plans a cardholder write and a pass write for every line of the
export, and the whole plan waits for the mass-change guard before anything is
written. Held as objects those writes were most of that sync's memory; here
they go to spools (``adapter.spool``, encrypted) as rows of plain values, dates
as ordinals and states as their values, and come back as objects one at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date

from adapter.models import PassState
from adapter.spool import Spool

PASS_STATE_OF = {state.value: state for state in PassState}


@dataclass(slots=True)
class HolderWrite:
    """A cardholder to insert or update."""

    key: str
    # Its household: the stored row's id, or else the number of the new household's insert among the plan's
    # new ones (``HouseholdWrites``), which the apply turns into its reserved row id.
    household_id: int | None
    household_new: int | None
    content_hash: str
    existing_id: int | None
    # True when its personal fields were handed to the sealer (new or changed): their sealed columns come
    # back from it in the order of these writes. False: a cardholder back in the export, as stored.
    sealed: bool = False
    # The record's birth date, for the grants (which would otherwise decrypt it again); with ``sealed`` only.
    # Left out of repr(): a write put in a message would otherwise carry it, and no mask recognises a date.
    birth_date: date | None = field(default=None, repr=False)
    # Set when an existing cardholder (this key before) takes the new key: the same child, re-issued.
    previous_key: str | None = None


@dataclass(slots=True)
class PassWrite:
    pass_number: str
    holder_key: str
    status: PassState
    valid_from: date | None
    valid_until: date | None
    existing_id: int | None
    # For a pass of a new cardholder: the number of that cardholder's insert among the plan's new ones
    # (``HolderWrites.new``), which the apply turns into its reserved row id.
    holder_new: int | None = None


class DaysByOrdinal(dict):
    """A date's ordinal (how the spools keep dates) -> one shared ``date`` per distinct day; None stays None."""

    def __init__(self) -> None:
        super().__init__({None: None})

    def __missing__(self, ordinal: int) -> date:
        day = self[ordinal] = date.fromordinal(ordinal)
        return day


def ordinal(day: date | None) -> int | None:
    return None if day is None else day.toordinal()


class _SpooledWrites:
    """Writes of one kind, in the order planned; on disk (``adapter.spool``), not in memory: a first sync
    plans one for every line of the export, and the plan waits whole for the guard. Each kind says how a
    write becomes a row of plain values and back."""

    def __init__(self) -> None:
        self._spool = Spool(prefix="stadspas-plan-")
        self._days = DaysByOrdinal()  # one date object per distinct day read back

    def __len__(self) -> int:
        return len(self._spool)

    def close(self) -> None:
        self._spool.close()


class HolderWrites(_SpooledWrites):
    def __init__(self) -> None:
        super().__init__()
        self.new = 0  # how many insert a new cardholder (the others update one)

    def append(self, write: HolderWrite) -> None:
        self._spool.append((write.key, write.household_id, write.household_new, write.content_hash,
                            write.existing_id, write.sealed, ordinal(write.birth_date), write.previous_key))
        if write.existing_id is None:
            self.new += 1

    def __iter__(self) -> Iterator[HolderWrite]:
        days = self._days
        for key, household_id, household_new, content_hash, existing_id, sealed, birth, previous_key in self._spool:
            yield HolderWrite(key, household_id, household_new, content_hash, existing_id, sealed, days[birth],
                              previous_key)


class HouseholdWrites(_SpooledWrites):
    """The keys of the new households, in the order of their inserts (``HolderWrite.household_new``)."""

    def append(self, key: str) -> None:
        self._spool.append((key,))

    def __iter__(self) -> Iterator[str]:
        for (key,) in self._spool:
            yield key


class PassWrites(_SpooledWrites):
    def __init__(self) -> None:
        super().__init__()
        self.new = 0  # how many insert a new pass (the others update one)

    def append(self, write: PassWrite) -> None:
        self._spool.append((write.pass_number, write.holder_key, write.status.value, ordinal(write.valid_from),
                            ordinal(write.valid_until), write.existing_id, write.holder_new))
        if write.existing_id is None:
            self.new += 1

    def __iter__(self) -> Iterator[PassWrite]:
        days = self._days
        for number, holder_key, status, valid_from, valid_until, existing_id, holder_new in self._spool:
            yield PassWrite(number, holder_key, PASS_STATE_OF[status], days[valid_from], days[valid_until],
                            existing_id, holder_new)
