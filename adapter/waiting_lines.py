"""The planner's lines that wait for the end of the reading, and what lets every other line go by.

A first sync would enter every line's new pass number, cardholder id, BSN and
household in the planner's tables, at some 300 bytes a line. While the export is
read those tables stay empty instead (a stored BSN apart, see ``enter``):

- each key a line looks up is asked of a filter of fixed size
  (``adapter.maybe_seen``), which says "never seen" or "maybe";
- each key a line enters goes to a log on disk, encrypted (``adapter.spool``);
- a line the filter cannot clear waits, on disk too, and so does every later line
  that shares a key with a waiting one (``waits_for``, ``hold``).

When the reading is done, ``replay`` fills the tables from the log with the keys
the waiting lines (and the planner's finish) ask about, and from then on every
key is entered in its table directly: the waiting lines are judged, in file
order, against exact tables. The planner (``adapter.sync_plan``) decides what a
line looks up and what it waits on; this module keeps the filter, the log, the
waiting lines and their keys.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator

from adapter.maybe_seen import MaybeSeen
from adapter.records import CardholderRecord
from adapter.spool import Spool

# The kinds of key a line enters, in the order of the planner's tables.
NUMBER, HOLDER, BSN, HOUSEHOLD = 0, 1, 2, 3


class WaitingLines:
    """``tables``: the planner's tables, by kind (NUMBER, HOLDER, BSN, HOUSEHOLD). Close it when done:
    closing deletes the log and the waiting lines."""

    def __init__(self, tables: tuple[dict, ...], maybe_seen: MaybeSeen | None = None):
        self._tables = tables
        self._maybe_seen = maybe_seen if maybe_seen is not None else MaybeSeen()
        # False while the export is read; True once replay() filled the tables: every key goes in them then.
        self.exact = False
        self._entered = Spool(prefix="stadspas-entered-")  # (kind, key, value) of each enter(), in order
        self._lines = Spool(prefix="stadspas-waiting-")  # (position, record) of each waiting line
        # Every key a waiting line may look up or enter, by kind: pass numbers, cardholder ids, BSNs.
        self.numbers: set[str] = set()
        self.holders: set[str] = set()
        self.bsns: set[bytes] = set()
        # What a waiting line asks about when judged, without making other lines wait: the pass number it
        # replaces (was it read?) and the household it joins (numbered already by a line judged while reading?).
        self._replaced: set[str] = set()
        self._households: set[str] = set()

    def __len__(self) -> int:
        return len(self._lines)

    def __iter__(self) -> Iterator[tuple[int, CardholderRecord]]:
        """The waiting lines, (position, record), in file order."""
        return iter(self._lines)

    def close(self) -> None:
        self._entered.close()
        self._lines.close()

    def maybe_seen(self, key: Hashable, kind: int) -> bool:
        """Whether a line may have looked up or entered ``key`` before; notes that this one does."""
        return self._maybe_seen.seen_before(key, kind)

    def waits_for(self, number: str, holder_key: str) -> bool:
        """Whether a waiting line carries this pass number or cardholder id, or may claim that cardholder (the
        stored holder of its BSN): a line that does waits too."""
        return bool(self.holders) and (holder_key in self.holders or number in self.numbers)

    def waits_for_bsn(self, bsn_key: bytes, stored_owners: dict[bytes, str]) -> bool:
        """Whether a waiting line carries this BSN, or the id of the stored cardholder that holds it
        (``stored_owners``: the snapshot's cardholder id by BSN)."""
        return bool(self.holders) and (bsn_key in self.bsns or stored_owners.get(bsn_key) in self.holders)

    def hold(self, position: int, record: CardholderRecord, bsn_key: bytes | None, stored_owner: str | None) -> None:
        """Make the line wait, with its keys: ``bsn_key`` when it may be its cardholder's first line, and
        ``stored_owner``, the stored cardholder with that BSN, whose own first line decides whether this one
        claims it."""
        self._lines.append((position, record))
        self.numbers.add(record.pass_number)
        self.holders.add(record.cardholder_id)
        if bsn_key is not None:
            self.bsns.add(bsn_key)
        if stored_owner is not None:
            self.holders.add(stored_owner)
        if record.replaces_pass_number:
            self._replaced.add(record.replaces_pass_number)
        self._households.add(record.household_id)

    def enter(self, kind: int, key: Hashable, value: object, *, at_once: bool = False) -> None:
        """A line entered ``key`` (of ``kind``) with ``value``: in the log while reading (the filter has it
        already: the line asked it), in the table once replayed, or at once when the caller says so."""
        if self.exact or at_once:
            self._tables[kind][key] = value
        else:
            self._entered.append((kind, key, value))

    def replay(self, more_numbers: set[str], more_households: set[str]) -> None:
        """The reading is done: fill the tables from the log with the keys the waiting lines carry or ask about,
        plus ``more_numbers`` and ``more_households`` that the planner asks about for lines that did not wait;
        from now on enter() fills them."""
        self.exact = True
        self._maybe_seen = MaybeSeen(bits_log2=6)  # the lines are all read: let the 8 MB go
        wanted: tuple[set, ...] = (self.numbers | self._replaced | more_numbers, self.holders, self.bsns,
                                   self._households | more_households)  # by kind
        if any(wanted):
            for kind, key, value in self._entered:
                if key in wanted[kind]:
                    self._tables[kind][key] = value
        self._entered.close()
        self.numbers, self.holders, self.bsns, self._replaced, self._households = set(), set(), set(), set(), set()
