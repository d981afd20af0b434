"""The birth dates a sync just wrote, by cardholder row id, handed to the grants.

The grants judge a child by its birth date, which is stored encrypted. For the
cardholders a sync has just written (new or changed) the sync still knows it, so
the grants need not decrypt it again. A first sync writes every cardholder of the
city: a dictionary of a million ids and dates would be one of its largest tables.
New cardholders get their row ids as one run reserved before the insert
(``adapter.bulk.reserve_ids``), so their dates are kept as two bytes each (days
counted from 1899-12-31) in an array beside that run; only the few changed cardholders, with
ids anywhere, go in a dictionary.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterator, Mapping, Sequence
from datetime import date

from adapter.plan_writes import DaysByOrdinal

# A new cardholder's date in the array: its day counted from _DAY_ZERO, 1 (1900-01-01) to 65534 (2079-06-04);
# _NO_DATE for none, _ELSEWHERE for a day outside that span (not a birth date any export has), which is kept
# in a dictionary instead.
_NO_DATE, _ELSEWHERE = 0, 0xFFFF
_DAY_ZERO = date(1900, 1, 1).toordinal() - 1


class BirthDatesById(Mapping[int, date | None]):
    """Row id -> birth date (None when the record has none), for the cardholders written."""

    def __init__(self, new_ids: Sequence[int]):
        """``new_ids``: the row ids of the new cardholders, ascending, in the order their dates will be added."""
        self._new_ids = new_ids
        # Where a new id's date sits: its distance from the run's start, or (ids from a shared sequence that
        # others took numbers from meanwhile, ascending) where a binary search finds it.
        self._start = new_ids.start if isinstance(new_ids, range) and new_ids.step == 1 else None
        self._new = array("H")
        self._outside: dict[int, date] = {}  # new ids whose date the array cannot hold (see _ELSEWHERE)
        self._changed: dict[int, date | None] = {}
        self._days = DaysByOrdinal()  # one date object per distinct day
        self._days[_DAY_ZERO + _NO_DATE] = None

    def add_new(self, birth_date: date | None) -> None:
        """The next new cardholder's birth date, in the order of ``new_ids``."""
        if len(self._new) >= len(self._new_ids):
            raise IndexError("more new cardholders' birth dates than new ids reserved")
        if birth_date is None:
            day = _NO_DATE
        else:
            day = birth_date.toordinal() - _DAY_ZERO
            if not _NO_DATE < day < _ELSEWHERE:
                self._outside[self._new_ids[len(self._new)]] = birth_date
                day = _ELSEWHERE
        self._new.append(day)

    def add_changed(self, holder_id: int, birth_date: date | None) -> None:
        self._changed[holder_id] = birth_date

    def __getitem__(self, holder_id: int) -> date | None:
        if not isinstance(holder_id, int):
            raise KeyError(holder_id)
        slot = self._slot(holder_id)
        if slot is None:
            return self._changed[holder_id]
        day = self._new[slot]
        if day == _ELSEWHERE:
            return self._outside[holder_id]
        return self._days[_DAY_ZERO + day]

    def __contains__(self, holder_id: object) -> bool:
        return (isinstance(holder_id, int) and self._slot(holder_id) is not None) or holder_id in self._changed

    def __iter__(self) -> Iterator[int]:
        yield from self._new_ids[:len(self._new)]
        yield from self._changed

    def __len__(self) -> int:
        return len(self._new) + len(self._changed)

    def _slot(self, holder_id: int) -> int | None:
        if self._start is not None:
            slot = holder_id - self._start
            return slot if 0 <= slot < len(self._new) else None
        slot = bisect_left(self._new_ids, holder_id, 0, len(self._new))
        return slot if slot < len(self._new) and self._new_ids[slot] == holder_id else None
