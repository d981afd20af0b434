"""What a sync just wrote of each cardholder the grants judge (birth date, child flag, passes), by row id.

The grants judge a child by its birth date, which is stored encrypted, by its
child flag and by its passes. For the cardholders a sync has just written (new or
changed) the sync still knows the first two, so the grants need not decrypt the
date again, nor read the cardholder's row back for the flag. On a source's first
load it also knows every pass of every cardholder, all written as new: then the
grants read no pass back either. A first sync writes every cardholder of the
city: a dictionary of a million ids would be one of its largest tables. New
cardholders get their row ids as one run reserved before the insert
(``adapter.bulk.reserve_ids``), so their dates are kept as two bytes each (days
counted from 1899-12-31) and their flags as one byte each in arrays beside that
run; only the few changed cardholders, with ids anywhere, go in dictionaries.
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
# A child flag as the byte its array keeps, and back.
_FLAGS: tuple[bool | None, bool, bool] = (None, False, True)
_FLAG_OF = {flag: byte for byte, flag in enumerate(_FLAGS)}
# A pass as the grants judge it: (its state as stored, valid from, valid until).
StoredPassFacts = tuple[str, date | None, date | None]
# The passes of a new cardholder are kept as the number of their set among the distinct sets noted, two bytes
# a cardholder: a city's passes share a few hundred periods of validity. Past this many sets, none are kept.
_MOST_PASS_SETS = 0xFFFF


class HolderFactsById(Mapping[int, date | None]):
    """Row id -> birth date (None when the record has none), for the cardholders written; their child flags
    (``Cardholder.is_child``) by ``child_flags_of``; on a source's first load the passes of the new ones by
    ``pass_facts_of``."""

    def __init__(self, new_ids: Sequence[int]):
        """``new_ids``: the row ids of the new cardholders, ascending, in the order their dates will be added."""
        self._new_ids = new_ids
        # Where a new id's date sits: its distance from the run's start, or (ids from a shared sequence that
        # others took numbers from meanwhile, ascending) where a binary search finds it.
        self._start = new_ids.start if isinstance(new_ids, range) and new_ids.step == 1 else None
        self._new = array("H")
        self._new_flags = array("b")  # a new cardholder's child flag: _FLAG_OF[flag]
        self._outside: dict[int, date] = {}  # new ids whose date the array cannot hold (see _ELSEWHERE)
        self._changed: dict[int, date | None] = {}
        self._changed_flags: dict[int, bool | None] = {}
        self._days = DaysByOrdinal()  # one date object per distinct day
        self._days[_DAY_ZERO + _NO_DATE] = None
        # Each new cardholder's passes, by its number in new_ids: the number of their set in _pass_sets (0: none
        # noted), two bytes as its date. None once given up (see note_new_pass).
        self._pass_set_of: array | None = array("H", bytes(2 * len(new_ids)))
        self._pass_sets: list[tuple[StoredPassFacts, ...]] = [()]
        self._pass_set_number: dict[tuple[StoredPassFacts, ...], int] = {(): 0}
        self._passes_complete = False

    def add_new(self, birth_date: date | None, is_child: bool | None) -> None:
        """The next new cardholder's birth date and child flag, in the order of ``new_ids``."""
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
        self._new_flags.append(_FLAG_OF[is_child])

    def note_new_pass(self, holder_new: int, facts: StoredPassFacts) -> None:
        """A pass written for the new cardholder numbered ``holder_new`` (its place in ``new_ids``)."""
        if self._pass_set_of is None:
            return
        grown = self._pass_sets[self._pass_set_of[holder_new]] + (facts,)
        number = self._pass_set_number.get(grown)
        if number is None:
            if len(self._pass_sets) >= _MOST_PASS_SETS:
                self._forget_passes()  # too varied to keep in two bytes: the grants read them back
                return
            number = self._pass_set_number[grown] = len(self._pass_sets)
            self._pass_sets.append(grown)
        self._pass_set_of[holder_new] = number

    def all_passes_noted(self) -> None:
        """Every pass of every new cardholder was noted (``note_new_pass``): the caller wrote them all as new, and
        no stored pass can belong to one. Only then does ``pass_facts_of`` answer."""
        self._passes_complete = self._pass_set_of is not None

    def _forget_passes(self) -> None:
        self._pass_set_of, self._pass_sets, self._pass_set_number = None, [()], {(): 0}
        self._passes_complete = False

    def pass_facts_of(self, holder_ids: Sequence[int]) -> list[tuple[StoredPassFacts, ...]] | None:
        """The passes of each of ``holder_ids`` (ascending, each once), when every one is a new cardholder whose
        passes were all noted; else None."""
        if not self._passes_complete:
            return None
        if not holder_ids:
            return []
        assert self._pass_set_of is not None
        sets, set_of = self._pass_sets, self._pass_set_of
        run = self._run_of(holder_ids, len(self._new_ids))
        if run is not None:
            return [sets[number] for number in set_of[run]]
        found = []
        for holder_id in holder_ids:
            slot = self._slot(holder_id, len(self._new_ids))
            if slot is None:
                return None
            found.append(sets[set_of[slot]])
        return found

    def add_changed(self, holder_id: int, birth_date: date | None, is_child: bool | None) -> None:
        self._changed[holder_id] = birth_date
        self._changed_flags[holder_id] = is_child

    def __getitem__(self, holder_id: int) -> date | None:
        slot = self._slot(holder_id)  # None for what is no int: then a KeyError below
        if slot is None:
            return self._changed[holder_id]
        day = self._new[slot]
        if day == _ELSEWHERE:
            return self._outside[holder_id]
        return self._days[_DAY_ZERO + day]

    def __contains__(self, holder_id: object) -> bool:
        return self._slot(holder_id) is not None or holder_id in self._changed

    def __iter__(self) -> Iterator[int]:
        yield from self._new_ids[:len(self._new)]
        yield from self._changed

    def __len__(self) -> int:
        return len(self._new) + len(self._changed)

    def child_flags_of(self, holder_ids: Sequence[int]) -> list[bool | None] | None:
        """The child flags of ``holder_ids`` (ascending, each once) when every one is a cardholder written
        here, else None. Those of an unbroken run of new ids (a first sync's slices) are one slice of an array."""
        if not holder_ids:
            return []
        run = self._run_of(holder_ids, len(self._new))
        if run is not None:
            return [_FLAGS[byte] for byte in self._new_flags[run]]
        flags = []
        for holder_id in holder_ids:
            slot = self._slot(holder_id)
            if slot is not None:
                flags.append(_FLAGS[self._new_flags[slot]])
            elif holder_id in self._changed_flags:
                flags.append(self._changed_flags[holder_id])
            else:
                return None
        return flags

    def _run_of(self, holder_ids: Sequence[int], among: int) -> slice | None:
        """Where ``holder_ids`` (ascending, non-empty) sit when they are one unbroken run of the first ``among``
        new ids (a first sync's slices), as one slice of the arrays; else None."""
        if self._start is None:
            return None
        first, last = holder_ids[0] - self._start, holder_ids[-1] - self._start
        if 0 <= first <= last < among and list(range(holder_ids[0], holder_ids[-1] + 1)) == holder_ids:
            return slice(first, last + 1)
        return None

    def _slot(self, holder_id: object, among: int | None = None) -> int | None:
        """``holder_id``'s place among the first ``among`` new ids (by default those whose date was added), or
        None."""
        if not isinstance(holder_id, int):
            return None
        among = len(self._new) if among is None else among
        if self._start is not None:
            slot = holder_id - self._start
            return slot if 0 <= slot < among else None
        slot = bisect_left(self._new_ids, holder_id, 0, among)
        return slot if slot < among and self._new_ids[slot] == holder_id else None

