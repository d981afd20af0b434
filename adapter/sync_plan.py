"""What a sync run would change, computed before anything is written.

The planner reads every record once, compares it with a snapshot of what the
database holds for the source (``adapter.sync_snapshot``), and produces a ``Plan``: which households, cardholders
and passes to insert or update, which passes were replaced, which went missing
and which are deactivated after the grace period. The guard judges the plan;
only then is it applied. Nothing here writes to the database or keeps
plaintext: a record whose personal fields are new or changed goes to the
``Sealer`` as it is judged (encrypted while reading goes on, see
``adapter.sealing``); the plan keeps its birth date only, for the grants.
The lines still to be judged and the plan's writes (``adapter.plan_writes``)
wait on disk, encrypted: a first sync has one of each for every line of the export.

An unchanged cardholder costs one keyed hash and a dictionary look-up.

Lines are judged in file order, as they are read, with one exception that never changes
a judgement: whether a line's new pass number, new cardholder id or BSN was read before
is asked of a filter of fixed size, not of a table of every key read. A line it is
unsure of waits, with every later line that shares a key with a waiting one; when the
reading is done they are judged in file order against exact tables of just their keys
(``adapter.waiting_lines``). A line that did not wait shares no key with any line before
it that waited, so judging it first leaves every judgement as in file order; what
reports order (rejections, samples, replacements) is put back in file order. Only the
numbering of new households and cardholders (the order of their inserts, so their row
ids) may differ from the file's.

The budget follows the child, not the card: a child is one person by its BSN
blind index. A new cardholder id whose BSN belongs to a cardholder of this
source that is absent from the export (a source re-issued the child under a new
person number: a move, a vendor re-import) *re-keys* that cardholder: its row,
budgets and ledger stay, its passes missing from the export become replaced by
the new pass. Two cardholders with one BSN in one export are refused: the one
already known wins, else the first in the file.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date

from adapter.crypto import Vault
from adapter.maybe_seen import MaybeSeen
from adapter.models import HolderStatus, PassState
from adapter.plan_writes import (
    PASS_STATE_OF,
    DaysByOrdinal,
    HolderWrite,
    HolderWrites,
    HouseholdWrites,
    PassWrite,
    PassWrites,
    ordinal,
)
from adapter.record_digests import bsn_blind_index, holder_content_hash
from adapter.records import CardholderRecord, PassStatus, RejectedRecord
from adapter.redaction import pass_number_tail
from adapter.sealing import Sealer
from adapter.spool import Spool
from adapter.sync_snapshot import TERMINAL_PASS_STATES, KnownHolder, KnownPass, Snapshot, digest
from adapter.waiting_lines import BSN, HOLDER, HOUSEHOLD, NUMBER, WaitingLines

SAMPLE_SIZE = 20
_CLAIMED = -1  # see Planner._new_holders
# New households the reading remembers by key (Planner._recent_households): an export lists a household's
# members together as a rule, so its later members find it here and need not wait.
RECENT_HOUSEHOLDS = 64
_WAITS = object()  # Planner._sight: the line waits until the reading is done
# Planner._first_sight_of: (content hash, BSN index as hex or None, BSN index as bytes or None, unchanged)
_Sight = tuple[str, "str | None", "bytes | None", bool]
_Household = tuple["int | None", "int | None"]  # see HolderWrite.household_id and household_new
DUPLICATE_BSN = "bsn: duplicate BSN in this export; another cardholder has the same BSN"
CREATED, UPDATED, UNCHANGED, REJECTED = "created", "updated", "unchanged", "rejected"


@dataclass(slots=True)
class _PassLine:
    position: int  # the line's number in the export
    record_key: str
    pass_number: str
    holder_key: str
    status: PassState
    valid_from: date | None
    valid_until: date | None
    replaces: str | None
    holder_outcome: str
    has_bsn: bool  # for the sample's masked BSN; the BSN itself is not kept
    holder_new: int | None  # a new cardholder's insert number (PassWrite.holder_new), else None


@dataclass
class Plan:
    source: str
    records_read: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (record key, reason)
    samples: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # outcome -> (record key, detail)
    new_households: HouseholdWrites = field(default_factory=HouseholdWrites)
    holders: HolderWrites = field(default_factory=HolderWrites)
    passes: PassWrites = field(default_factory=PassWrites)
    replacements: list[tuple[str, str]] = field(default_factory=list)  # (old number, new number)
    holders_missing: list[int] = field(default_factory=list)
    holders_deactivated: list[int] = field(default_factory=list)
    passes_missing: list[int] = field(default_factory=list)
    passes_deactivated: list[int] = field(default_factory=list)
    passes_newly_blocked: int = 0
    known_passes: int = 0
    last_good_records: int | None = None
    # Stored passes absent from tonight on: newly missing, or deactivated at once (no grace nights).
    passes_newly_absent: int = 0
    # Rejected lines naming one of those passes (see disruptive_changes).
    rejected_absent: int = 0

    def __enter__(self) -> Plan:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Delete the spooled writes: the run was applied, refused or failed."""
        self.new_households.close()
        self.holders.close()
        self.passes.close()

    @property
    def disruptive_changes(self) -> int:
        """What the mass-change guard weighs: passes that vanish or stop working tonight, and rejected records.
        A rejected line of a stored pass makes that pass absent too: it counts once (``rejected_absent``).

        Not the passes deactivated after their grace: their absence began in a run that was applied, within the
        guard's share or forced by an operator who looked, and was weighed then. Counted again at the grace's
        end, a forced run's passes made the run of that night refused in turn."""
        return self.passes_newly_absent + self.passes_newly_blocked + self.counts[REJECTED] - self.rejected_absent

    @property
    def writes_anything(self) -> bool:
        return bool(self.new_households or self.holders or self.passes or self.replacements
                    or self.holders_missing or self.holders_deactivated or self.passes_missing
                    or self.passes_deactivated)


class Planner:
    """Feed it every record, then ask for the plan. Use it as a context manager: leaving it deletes its
    spooled lines, and the plan's writes too unless ``finish()`` handed the plan over."""

    def __init__(self, snapshot: Snapshot, vault: Vault, sealer: Sealer, *, maybe_seen: MaybeSeen | None = None):
        self._snapshot = snapshot
        self._vault = vault
        self._sealer = sealer
        self._plan = Plan(snapshot.source, known_passes=snapshot.known_passes,
                          last_good_records=snapshot.last_good_records)
        # What the export names is marked on the snapshot's own rows (KnownHolder.outcome, KnownPass.read_as):
        # a table of every cardholder id and pass number read would cost a look-up and an insert per line
        # in tables of a few hundred thousand entries, a sixth of the planner's time. What the database does
        # not hold yet goes in a table per kind of key (NUMBER, HOLDER, BSN, HOUSEHOLD, in that order in
        # self._tables), each filled alike (WaitingLines.enter):
        # every new pass number read (its value None);
        self._new_numbers: dict[str, None] = {}
        # a new cardholder id -> the number of its insert among the plan's new cardholders (the apply
        # gives it the reserved row id of that number, so no table of ids by key is built there), or
        # _CLAIMED when it re-keys a stored cardholder (see _first_sight);
        self._new_holders: dict[str, int] = {}
        # BSN blind index -> the cardholder id that holds it in this export; a cardholder settled as unchanged
        # on the nightly fast path is left out (see _owner_of). The index as its bytes, not its hex digits;
        self._bsn_owner: dict[bytes, str] = {}
        # a new household key -> the number of its insert among the plan's new households.
        self._new_households: dict[str, int] = {}
        self._tables: tuple[dict, ...] = (self._new_numbers, self._new_holders, self._bsn_owner,
                                          self._new_households)
        # ... but while the export is read, these tables are left empty, stored BSNs apart (see _enter): the
        # lines that cannot be judged without them wait (adapter.waiting_lines; _sight, _wait), and are
        # judged once the reading is done (_judge_waiting). Of the new households the reading keeps the last
        # RECENT_HOUSEHOLDS entered (_add_household).
        self._recent_households: dict[str, int] = {}
        self._waiting = WaitingLines(self._tables, maybe_seen)
        # Only the lines still to be judged in finish(); an unchanged pass is judged as it is read. On disk
        # (a first sync judges every line there), as plain tuples: see _judge_line() and _spooled_lines().
        # The waiting lines' own go to a second spool; finish() reads the two merged, in file order.
        self._lines = Spool(prefix="stadspas-lines-")
        self._late_lines = Spool(prefix="stadspas-late-lines-")
        self._line_days = DaysByOrdinal()
        # (position, replaced number, its new number, the new line's cardholder id) of every line that names a
        # replaced pass: the few finish() needs before it judges the lines.
        self._replacing: list[tuple[int, str, str, str]] = []
        self._handed_over = False
        # New cardholder id -> (the absent known cardholder with its BSN, the record, its content hash,
        # its BSN index). The record stays in plain text until finish() settles the claim: a re-issued child
        # is rare, and whether it is re-keyed depends on lines still to come.
        self._claims: dict[str, tuple[str, CardholderRecord, str, str]] = {}
        self._rekeyed: dict[str, str] = {}  # new key -> previous key, once confirmed
        # Lines judged unchanged as they were read: counted here, added to the plan's counts in finish().
        self._unchanged_as_read = 0
        # What the reports keep in file order, by position: the rejected lines, and the first lines judged
        # unchanged as they were read (up to SAMPLE_SIZE before and after _judge_waiting starts).
        self._rejected_at: list[tuple[int, str, str]] = []
        # Stored passes named by a rejected line (RejectedRecord.pass_number): ids only, a few per night.
        self._rejected_pass_ids: set[int] = set()
        self._unchanged_sample: list[tuple[int, str, str, PassState, bool]] = []
        self._sampled_before_waiting = 0

    def __enter__(self) -> Planner:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        for spooled in (self._lines, self._late_lines, self._waiting):
            spooled.close()
        if not self._handed_over:
            self._plan.close()

    def feed(self, record: CardholderRecord | RejectedRecord, content_hash: str | None = None) -> None:
        """Judge one line now, or let it wait. ``content_hash``: the record's, when the reading worker computed
        it (``adapter.record_digests``); without it, it is computed here. The BSN's blind index is computed here,
        when needed (a stored cardholder that is unchanged keeps its own)."""
        plan = self._plan
        plan.records_read += 1
        position = plan.records_read
        if isinstance(record, RejectedRecord):
            self._reject(record.source_key, record.reason or "rejected by validation", position)
            stored = self._snapshot.passes.get(record.pass_number) if record.pass_number is not None else None
            if stored is not None:
                self._rejected_pass_ids.add(stored.id)
            return
        # Looked up once a line, for the waiting's decision and the judgement alike (the nightly fast path).
        snapshot = self._snapshot
        stored_pass, known = snapshot.passes.get(record.pass_number), snapshot.holders.get(record.cardholder_id)
        sight = self._sight(record, stored_pass, known, content_hash)
        if sight is _WAITS:
            self._wait(record, position, known, content_hash)
            return
        self._judge_line(record, position, sight, stored_pass, known)

    def finish(self, today: date, grace_nights: int) -> Plan:
        """The plan, complete; from now on the caller closes it (``Plan`` is a context manager)."""
        plan = self._plan
        snapshot = self._snapshot
        self._judge_waiting()
        plan.counts[UNCHANGED] += self._unchanged_as_read
        self._unchanged_as_read = 0
        refused = self._settle_claims()
        replaced_by = {replaced: number for _position, replaced, number, holder_key in self._replacing
                       if holder_key not in refused}
        holder_ids = _HolderIds(snapshot, self._rekeyed)
        replaced_and_judged: set[str] = set()  # replaced numbers judged here, not while reading
        rekeyed_lines: list[_PassLine] = []  # a re-keyed child's lines, for its successor pass
        # One line at a time from the spools: on a first sync every line is judged here.
        for line in self._spooled_lines():
            if line.holder_key in refused:
                self._unread(line.pass_number)
                self._reject(line.record_key, DUPLICATE_BSN)
                continue
            if line.pass_number in replaced_by:
                replaced_and_judged.add(line.pass_number)
            if line.holder_key in self._rekeyed:
                rekeyed_lines.append(line)
            pass_outcome = self._judge_pass(line, replaced_by, holder_ids)
            outcome = (CREATED if CREATED in (line.holder_outcome, pass_outcome)
                       else UPDATED if UPDATED in (line.holder_outcome, pass_outcome) else UNCHANGED)
            plan.counts[outcome] += 1
            self._sample(outcome, line.record_key, line.pass_number, line.status, line.has_bsn)
        self._lines.close()
        self._late_lines.close()
        self._replace_judged_unchanged(replaced_by, replaced_and_judged)
        self._plan_replacements(replaced_by)
        self._plan_absences(today, grace_nights, set(replaced_by), rekeyed_lines)
        # The look-up tables are done with: let them go before the apply, which holds tables of its own.
        for table in (*self._tables, self._recent_households):
            table.clear()
        self._claims = {}
        self._handed_over = True
        return plan

    # ------------------------------------------------------------ reading: judge now, or wait

    def _sight(self, record: CardholderRecord, stored_pass: KnownPass | None, known: KnownHolder | None,
               content_hash: str | None) -> _Sight | None | object:
        """While reading: _WAITS if the line must wait; else what its cardholder's first sight needs
        (``_first_sight_of``), or None when the line is not its cardholder's first. Once the reading is done,
        None: every line is judged against the exact tables. (``stored_pass``, ``known``: the line's pass and
        cardholder in the snapshot, if there.)"""
        waiting = self._waiting
        if waiting.exact:
            return None
        number, key = record.pass_number, record.cardholder_id
        snapshot = self._snapshot
        if waiting.waits_for(number, key):
            return _WAITS
        if stored_pass is None and waiting.maybe_seen(number, NUMBER):
            return _WAITS
        if stored_pass is not None and stored_pass.read_as is not None:
            return None  # rejected as a second line of a stored pass: nothing else is looked at
        if known is None:
            if waiting.maybe_seen(key, HOLDER):
                return _WAITS
        elif known.outcome is not None:
            return None  # a stored cardholder's later line: judged by its snapshot row alone
        sight = self._first_sight_of(record, known, content_hash)
        bsn_key = sight[2]
        if bsn_key is not None:
            if bsn_key not in snapshot.holder_by_bsn and waiting.maybe_seen(bsn_key, BSN):
                return _WAITS  # (a stored BSN's owner is in the table itself: see _enter)
            if waiting.waits_for_bsn(bsn_key, snapshot.holder_by_bsn):
                return _WAITS
        household = record.household_id
        if (household not in snapshot.households and household not in self._recent_households
                and waiting.maybe_seen(household, HOUSEHOLD)):
            return _WAITS  # a household of this export's, perhaps, whose number only the log holds
        return sight

    def _wait(self, record: CardholderRecord, position: int, known: KnownHolder | None,
              content_hash: str | None) -> None:
        bsn_key = owner = None
        if known is None or known.outcome is None:  # its cardholder's first line, perhaps: its BSN counts too
            bsn_key = self._first_sight_of(record, known, content_hash)[2]
            if bsn_key is not None:
                owner = self._snapshot.holder_by_bsn.get(bsn_key)
        self._waiting.hold(position, record, bsn_key, owner)

    def _enter(self, kind: int, key: str | bytes, value: object) -> None:
        """Note that a line entered ``key`` in the table of ``kind`` (see WaitingLines.enter). A stored BSN goes
        in the table at once: few lines enter one (a changed or re-issued child), and the nightly fast path
        asks about every stored one, which the table answers exactly and faster than the filter."""
        self._waiting.enter(kind, key, value, at_once=kind == BSN and key in self._snapshot.holder_by_bsn)

    def _judge_waiting(self) -> None:
        """Judge the waiting lines, in file order, against tables of the keys they and the finish need."""
        waiting = self._waiting
        self._sampled_before_waiting = len(self._unchanged_sample)
        # Besides what the waiting lines carry and ask about (WaitingLines.hold): the numbers that lines judged
        # while reading replaced (finish() asks whether each was read), and the households that re-keyed
        # children may join (a line judged while reading may have numbered them).
        waiting.replay({replaced for _position, replaced, _number, _key in self._replacing},
                       {record.household_id for _previous, record, _hash, _index in self._claims.values()})
        passes, holders = self._snapshot.passes, self._snapshot.holders
        for position, record in waiting:
            self._judge_line(record, position, None, passes.get(record.pass_number), holders.get(record.cardholder_id))
        waiting.close()
        # Back in file order: what the reports list.
        self._replacing.sort()
        self._rejected_at.sort(key=lambda rejected: rejected[0])
        self._plan.rejected.extend((record_key, reason) for _position, record_key, reason in self._rejected_at)
        self._rejected_at = []
        for _position, *sampled in heapq.nsmallest(SAMPLE_SIZE, self._unchanged_sample):
            self._sample(UNCHANGED, *sampled)
        self._unchanged_sample = []

    def _judge_line(self, record: CardholderRecord, position: int, sight: _Sight | None, stored_pass: KnownPass | None,
                    stored_holder: KnownHolder | None) -> None:
        number = record.pass_number
        if self._is_read(number, stored_pass):
            self._reject(record.source_key, "pass_number: appears more than once in this export", position)
            return
        if stored_pass is None and number in self._snapshot.foreign_pass_numbers:
            self._reject(record.source_key, "pass_number: already belongs to a cardholder of another source", position)
            return
        key = record.cardholder_id
        if stored_holder is not None:
            holder_outcome, holder_new = stored_holder.outcome, None
        else:
            holder_new = self._new_holders.get(key)
            holder_outcome = None if holder_new is None else UNCHANGED
        if holder_outcome is None:
            holder_outcome = self._first_sight(record, stored_holder, sight or self._first_sight_of(record, stored_holder))
            if holder_outcome == REJECTED:
                self._reject(record.source_key, DUPLICATE_BSN, position)
                return
            if stored_holder is not None:
                stored_holder.outcome = holder_outcome
            else:
                holder_new = self._plan.holders.new - 1 if holder_outcome == CREATED else _CLAIMED
                self._enter(HOLDER, key, holder_new)
        else:
            holder_outcome = UNCHANGED  # counted with the holder's first pass
        if stored_pass is not None:
            stored_pass.read_as = record.source_key
        else:
            self._enter(NUMBER, number, None)
        status = _PASS_STATES[record.pass_status]
        replaces = record.replaces_pass_number
        # The nightly fast path: nothing kept for a line whose holder and pass are as stored. Only a line
        # naming a later one's replaced pass can still change its fate; finish() re-judges those few.
        if (holder_outcome == UNCHANGED and (not replaces or replaces == number)
                and stored_holder is not None and stored_pass is not None
                and _as_stored(stored_pass, stored_holder.id, status, record.valid_from, record.valid_until)):
            self._unchanged_as_read += 1
            # The detail is worded only for the few kept, in finish().
            if len(self._unchanged_sample) - self._sampled_before_waiting < SAMPLE_SIZE:
                self._unchanged_sample.append((position, record.source_key, number, status, bool(record.bsn)))
            return
        if replaces and replaces != number:
            self._replacing.append((position, replaces, number, key))
        (self._late_lines if self._waiting.exact else self._lines).append((
            position, record.source_key, number, key, status.value, ordinal(record.valid_from),
            ordinal(record.valid_until), replaces, holder_outcome, bool(record.bsn),
            None if holder_new is None or holder_new < 0 else holder_new))

    def _spooled_lines(self) -> Iterator[_PassLine]:
        days = self._line_days
        for (position, record_key, number, key, status, valid_from, valid_until, replaces, outcome, has_bsn,
             holder_new) in heapq.merge(self._lines, self._late_lines):
            yield _PassLine(position, record_key, number, key, PASS_STATE_OF[status], days[valid_from],
                            days[valid_until], replaces, outcome, has_bsn, holder_new)

    # ------------------------------------------------------------ the same child, by BSN

    def _first_sight_of(self, record: CardholderRecord, known: KnownHolder | None,
                        content_hash: str | None = None) -> _Sight:
        """What judging a cardholder id's first record starts from (``known``: the stored cardholder, if
        there is one): its content hash, its BSN's blind index twice, as hex digits (for the sealer to write;
        None when the stored cardholder is unchanged) and as bytes (for the tables here), and whether it is
        unchanged. ``content_hash``: the record's, when the reading worker computed it (else computed here)."""
        if content_hash is None:
            content_hash = holder_content_hash(self._vault.hashes, record)
        if known is not None and known.content_hash == digest(content_hash):
            # Unchanged: no second keyed hash on the nightly fast path, and nothing to seal again.
            return content_hash, None, known.bsn_index, True
        bsn_index = bsn_blind_index(self._vault.hashes, record)
        return content_hash, bsn_index, digest(bsn_index), False

    def _first_sight(self, record: CardholderRecord, known: KnownHolder | None, sight: _Sight) -> str:
        """Judge a cardholder id's first record (``known``: the stored cardholder, if there is one;
        ``sight``: see _first_sight_of): CREATED/UPDATED/UNCHANGED, or REJECTED for a duplicate BSN."""
        key = record.cardholder_id
        content_hash, bsn_index, bsn_key, unchanged = sight
        if unchanged:
            assert known is not None
            if (known.status == HolderStatus.ACTIVE and known.missing_since is None
                    and record.household_id in self._snapshot.households
                    and (bsn_key is None or (bsn_key not in self._bsn_owner
                                             and bsn_key not in self._snapshot.shared_bsns))):
                # The nightly case, settled here: active, as stored, the one stored cardholder with its BSN
                # and no other line has that BSN so far. Nothing is entered for it (one table entry per
                # cardholder is a tenth of the planner's time): _owner_of() finds it through the snapshot.
                return UNCHANGED
        if bsn_key is None:
            return self._judge_holder(record, content_hash, known, None)
        owner = self._owner_of(bsn_key)
        if owner is not None and owner != key:
            claim = self._claims.get(owner)
            if claim is None or claim[0] != key:
                return REJECTED
            # The known cardholder is in the export after all: it wins, the newcomer is refused in finish().
        self._enter(BSN, bsn_key, key)
        if known is None:
            previous_key = self._snapshot.holder_by_bsn.get(bsn_key)
            if previous_key is not None and self._snapshot.holders[previous_key].outcome is None:
                self._claims[key] = (previous_key, record, content_hash, bsn_index)
                return UPDATED
        return self._judge_holder(record, content_hash, known, bsn_index)

    def _owner_of(self, bsn_key: bytes) -> str | None:
        """The cardholder id that holds this BSN (its blind index as bytes) in the export so far, or None."""
        owner = self._bsn_owner.get(bsn_key)
        if owner is None:
            # Settled on the fast path? Then it is the one stored cardholder with this BSN, read unchanged.
            stored = self._snapshot.holder_by_bsn.get(bsn_key)
            if stored is not None and self._snapshot.holders[stored].outcome == UNCHANGED:
                return stored
        return owner

    def _settle_claims(self) -> set[str]:
        """Re-key each known cardholder whose BSN came under a new id, unless it is in the export itself.
        Return the new ids whose claim is refused: their lines are rejected (a duplicate BSN)."""
        refused: set[str] = set()
        for new_key, (previous_key, record, content_hash, bsn_index) in self._claims.items():
            if self._snapshot.holders[previous_key].outcome is not None:
                refused.add(new_key)
                continue
            known = self._snapshot.holders[previous_key]
            household = self._add_household(record.household_id)
            self._write_sealed(record, household, bsn_index, content_hash, known.id, new_key, previous_key)
            self._rekeyed[new_key] = previous_key
        return refused

    def _is_read(self, number: str, stored: KnownPass | None) -> bool:
        """Whether a line carried this pass number so far (``stored``: its stored pass, if any)."""
        return stored.read_as is not None if stored is not None else number in self._new_numbers

    def _unread(self, number: str) -> None:
        stored = self._snapshot.passes.get(number)
        if stored is not None:
            stored.read_as = None
        else:
            self._new_numbers.pop(number, None)

    # ------------------------------------------------------------ holders and passes

    def _add_household(self, household_key: str) -> _Household:
        """Plan the household if it is new; return (its stored row id, None) or (None, the number of its insert)."""
        stored = self._snapshot.households.get(household_key)
        if stored is not None:
            return stored, None
        # While reading, _sight let the line through: the household was read just now, or never before.
        exact = self._waiting.exact
        new = (self._new_households if exact else self._recent_households).get(household_key)
        if new is None:
            new = len(self._plan.new_households)
            self._plan.new_households.append(household_key)
            self._enter(HOUSEHOLD, household_key, new)
            if not exact:
                recent = self._recent_households
                recent[household_key] = new
                if len(recent) > RECENT_HOUSEHOLDS:
                    del recent[next(iter(recent))]  # the oldest
        return None, new

    def _judge_holder(self, record: CardholderRecord, content_hash: str, known: KnownHolder | None,
                      bsn_index: str | None) -> str:
        household = self._add_household(record.household_id)
        if known is None:
            self._write_sealed(record, household, bsn_index, content_hash, None, record.cardholder_id)
            return CREATED
        if known.content_hash != digest(content_hash):
            self._write_sealed(record, household, bsn_index, content_hash, known.id, record.cardholder_id)
            return UPDATED
        if known.status != HolderStatus.ACTIVE or known.missing_since is not None:
            # Back in the export: active again, nothing to re-encrypt.
            self._plan.holders.append(HolderWrite(record.cardholder_id, *household, content_hash,
                                                  known.id))
            return UPDATED
        return UNCHANGED

    def _write_sealed(self, record: CardholderRecord, household: _Household, bsn_index: str | None, content_hash: str,
                      existing_id: int | None, key: str, previous_key: str | None = None) -> None:
        """A write whose personal fields change: they go to the sealer now, in the order of the writes,
        with the BSN's blind index judged above (the sealer does not compute it again)."""
        self._sealer.add(record, bsn_index)
        self._plan.holders.append(HolderWrite(key, *household, content_hash, existing_id, True,
                                              record.birth_date, previous_key))

    def _replace_judged_unchanged(self, replaced_by: dict[str, str], judged_in_finish: set[str]) -> None:
        """A pass judged unchanged while reading that a line named as replaced: it is replaced after all.
        (``judged_in_finish``: the replaced numbers whose lines were judged in finish() instead.)"""
        passes = self._snapshot.passes
        numbers = [number for number in replaced_by
                   if number not in judged_in_finish and self._is_read(number, passes.get(number))]
        if not numbers:
            return
        key_of = {known.id: key for key, known in self._snapshot.holders.items()}
        plan = self._plan
        for number in numbers:
            known = self._snapshot.passes[number]
            if known.status == PassState.REPLACED:
                continue  # stored as replaced already: unchanged indeed
            plan.passes.append(PassWrite(number, key_of[known.cardholder_id], PassState.REPLACED, known.valid_from,
                                         known.valid_until, known.id))
            record_key = known.read_as
            plan.counts[UNCHANGED] -= 1
            plan.counts[UPDATED] += 1
            unchanged_sample = plan.samples.get(UNCHANGED, [])
            plan.samples[UNCHANGED] = [entry for entry in unchanged_sample if entry[0] != record_key]
            self._sample(UPDATED, record_key, number, PassState.REPLACED,
                         self._snapshot.holders[key_of[known.cardholder_id]].bsn_index is not None)

    def _judge_pass(self, line: _PassLine, replaced_by: dict[str, str], holder_ids: _HolderIds) -> str:
        known = self._snapshot.passes.get(line.pass_number)
        status = line.status
        # A replaced number never works again, even if the export still lists it as active.
        if line.pass_number in replaced_by or (known is not None and known.status == PassState.REPLACED):
            status = PassState.REPLACED
        write = PassWrite(line.pass_number, line.holder_key, status, line.valid_from, line.valid_until,
                          known.id if known else None, line.holder_new)
        if known is None:
            self._plan.passes.append(write)
            return CREATED
        if status == PassState.BLOCKED and known.status != PassState.BLOCKED:
            self._plan.passes_newly_blocked += 1
        if (known.cardholder_id != holder_ids.get(line.holder_key) or known.status != status
                or known.valid_from != line.valid_from or known.valid_until != line.valid_until
                or known.missing_since is not None):
            self._plan.passes.append(write)
            return UPDATED
        return UNCHANGED

    def _plan_replacements(self, replaced_by: dict[str, str]) -> None:
        passes = self._snapshot.passes
        for old_number, new_number in replaced_by.items():
            old = passes.get(old_number)
            if old is None and old_number not in self._new_numbers:
                continue  # the source names a pass we never knew: nothing to stop
            new = passes.get(new_number)
            if old is not None and new is not None and old.status == PassState.REPLACED \
                    and old.replaced_by_id == new.id:
                continue
            self._plan.replacements.append((old_number, new_number))

    def _plan_absences(self, today: date, grace_nights: int, replaced_numbers: set[str],
                       rekeyed_lines: list[_PassLine]) -> None:
        plan = self._plan
        passes, holders = self._snapshot.passes, self._snapshot.holders
        successor = self._successor_passes(rekeyed_lines)
        # In id order, whatever order the snapshot was read in.
        absent = [(number, known) for number, known in passes.items()
                  if known.read_as is None and number not in replaced_numbers and known.status not in TERMINAL_PASS_STATES]
        for number, known in sorted(absent, key=lambda item: item[1].id):
            if known.cardholder_id in successor:
                # A re-keyed child's old card stops working now; its budgets work on the new one.
                plan.replacements.append((number, successor[known.cardholder_id]))
            else:
                if known.missing_since is None:  # absent from tonight on: the guard weighs it tonight
                    plan.passes_newly_absent += 1
                    plan.rejected_absent += known.id in self._rejected_pass_ids
                if _out_of_grace(known.missing_since, today, grace_nights):
                    plan.passes_deactivated.append(known.id)
                elif known.missing_since is None:
                    plan.passes_missing.append(known.id)
        rekeyed = set(self._rekeyed.values())
        absent_holders = [holder for key, holder in holders.items()
                          if holder.outcome is None and key not in rekeyed and holder.status != HolderStatus.INACTIVE]
        for holder in sorted(absent_holders, key=lambda holder: holder.id):
            if _out_of_grace(holder.missing_since, today, grace_nights):
                plan.holders_deactivated.append(holder.id)
            elif holder.missing_since is None:
                plan.holders_missing.append(holder.id)

    def _successor_passes(self, rekeyed_lines: list[_PassLine]) -> dict[int, str]:
        """Re-keyed cardholder's row id -> the pass its old passes are replaced by (an active one first).
        ``rekeyed_lines``: the lines of the re-keyed cardholders, in file order."""
        if not self._rekeyed:
            return {}
        ids = {new_key: self._snapshot.holders[old_key].id for new_key, old_key in self._rekeyed.items()}
        successor: dict[int, str] = {}
        for line in sorted(rekeyed_lines, key=lambda line: line.status != PassState.ACTIVE):
            successor.setdefault(ids[line.holder_key], line.pass_number)
        return successor

    # ------------------------------------------------------------ reporting

    def _reject(self, record_key: str, reason: str, position: int | None = None) -> None:
        """Reject a line; ``position``: its place in the export, while lines are read or wait (put back in
        file order in _judge_waiting), None in finish() after that."""
        self._plan.counts[REJECTED] += 1
        if position is None:
            self._plan.rejected.append((record_key, reason))
        else:
            self._rejected_at.append((position, record_key, reason))

    def _sample(self, outcome: str, record_key: str, pass_number: str, status: PassState, has_bsn: bool) -> None:
        sample = self._plan.samples.get(outcome)
        if sample is None:
            sample = self._plan.samples[outcome] = []
        if len(sample) < SAMPLE_SIZE:  # the detail is worded only for the few kept
            sample.append((record_key, f"pass ****{pass_number_tail(pass_number)} {status.value}, "
                                       f"BSN {'*********' if has_bsn else '-'}"))


def _out_of_grace(missing_since: date | None, today: date, grace_nights: int) -> bool:
    """Whether something absent tonight is deactivated now: absent for ``grace_nights`` nights already, or at once
    when there is no grace (``sync.grace_nights: 0``)."""
    if missing_since is None:
        return grace_nights == 0
    return (today - missing_since).days >= grace_nights


def _as_stored(known: KnownPass, holder_id: int, status: PassState, valid_from: date | None,
               valid_until: date | None) -> bool:
    """Whether the stored pass is exactly so, under this (known, unchanged) cardholder."""
    # A replaced number never works again, even if the export still lists it as active.
    return (known.missing_since is None and known.cardholder_id == holder_id
            and (known.status is status or known.status is PassState.REPLACED)
            and known.valid_from == valid_from and known.valid_until == valid_until)


class _HolderIds:
    """Cardholder key -> stored row id, for the lines judged in finish(): a re-keyed child under its new key."""

    def __init__(self, snapshot: Snapshot, rekeyed: dict[str, str]):
        self._holders = snapshot.holders
        self._rekeyed = rekeyed

    def get(self, key: str) -> int | None:
        known = self._holders.get(self._rekeyed.get(key, key))
        return known.id if known is not None else None


_PASS_STATES = {status: PassState(status.value) for status in PassStatus}

