"""Automatic grants: every eligible child has exactly one budget per rule and period.

Runs inside the sync's write transaction (so a run's changes and its grants
commit together) and can run on its own. Idempotent: the Budget unique
constraint (cardholder, rule, period) backs the check for an existing budget.

Judging eligibility needs the birth date, which is encrypted. To keep the
nightly run cheap, a child is judged only when something could have changed
the answer: its record or its passes changed (the sync names those children,
``changed``), or the rules or today's periods changed: then every active child of
the source is judged, once. What the source's children were last judged under is
one row per source (``GrantJudgement``), not one per child: a first sync of a city
wrote 200,000 such rows, and on PostgreSQL writing and checking them took 0.7 s of
its grants. Birth dates of records the sync just read come in as plaintext; the
rest are decrypted in one pass.

At a period's end what is left expires with an expiry ledger entry (after the
configured grace days). A blocked pass keeps its budget; a child that is no
longer eligible keeps what it was granted until the period ends.
"""

from __future__ import annotations

import bisect
import itertools
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, NamedTuple

from sqlalchemy import String, bindparam, delete, null, select, type_coerce, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from adapter import age_bands, ledger
from adapter.crypto import Vault
from adapter.holder_facts import HolderFactsById, StoredPassFacts
from adapter.models import (Base, Budget, BudgetStatus, Cardholder, HolderStatus, Pass, UtcDateTime, machine_key,
                            utcnow)
from adapter.periods import earliest_spendable_end
from adapter.personal import open_sealed
from adapter.rules import BudgetRules, PassFacts, age_days, age_on
from adapter.sent_ahead import sending_ahead

_CHUNK = 500
_JUDGE_SLICE = 5_000  # children judged per slice (see grant_budgets): 20,000 held 12 MB more at their peak
# A slice is read by its ids rather than their range when they are fewer than 1 in this many of it.
_SPARSE_BELOW = 8


class GrantJudgement(Base):
    """The rules under which every active child of a source was judged (``rules_key``, ``BudgetRules.fingerprint``)
    and each change since, in the run that wrote it. No row, or another key: judge every active child again.
    Written in the run's own transaction, as its grants are."""

    __tablename__ = "grant_judgements"

    source: Mapped[str] = mapped_column(machine_key(64), primary_key=True)
    rules_key: Mapped[str] = mapped_column(String(64))
    judged_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


@dataclass(frozen=True)
class GrantSummary:
    children_judged: int = 0
    budgets_opened: int = 0
    budgets_topped_up: int = 0
    cents_granted: int = 0


def grant_budgets(session: Session, vault: Vault, rules: BudgetRules, today: date, *, source: str,
                  written: HolderFactsById | None = None, actor: str = "sync",
                  active_holders: Sequence[int] | None = None, changed: Iterable[int] = (),
                  no_budgets_yet: bool = False) -> GrantSummary:
    """Open or top up every budget an active child of ``source`` is entitled to today; never take money back.

    The children judged: every active one when the source's children were last judged under other rules or
    periods, or never (``GrantJudgement``); else the active ones among ``changed``, the cardholders whose record
    or passes the caller changed since (the sync: those it just wrote, new ones included). Then the source's
    children count as judged under today's rules (``judged_at`` says since when), in the caller's transaction.

    ``active_holders``: the ids of every active cardholder of ``source``, each once and in ascending order,
    when the caller knows them (the sync does, from its snapshot and what it just wrote); else they are read.

    ``written``: the birth dates and child flags of the cardholders the caller just wrote (the sync does).
    Their dates are not decrypted again, and a slice of children all written there is not read back at all;
    nor are their passes, on a source's first load, when the caller wrote every one of them.

    ``no_budgets_yet``: the caller knows that no child has a budget yet (a first load into empty tables,
    which this transaction holds locked): no budgets are looked up before new ones are opened. A first load
    on PostgreSQL adds the unique key that such a look-up would use only at its end (``adapter.first_load``);
    it refuses a second budget then. On PostgreSQL the budgets' and their entries' ids are taken in one move
    each (``adapter.bulk.reserve_ids`` with ``alone``, which checks the lock), as nobody else can write those
    tables meanwhile.
    """
    running = rules.current(today)
    rules_key = rules.fingerprint(today)
    # The big reads below go straight to the connection (no ORM row handling); flush first so they see
    # whatever the caller added through the ORM.
    session.flush()
    judged_under = _judged_under(session, source)
    candidates = (_active_ids(session, source, active_holders) if judged_under != rules_key
                  else _active_among(session, source, changed, active_holders))
    summary = GrantSummary()
    # The children are judged in slices of ids, each with its own passes and budgets: a first sync of a
    # million cardholders never holds all of them (and their personal tokens) in memory at once.
    known_birth_dates: Mapping[int, date | None] = written if written is not None else {}
    # On a first load into empty tables on PostgreSQL each slice's first grants are sent ahead: the server
    # writes them while this process judges the next slice, which then reads nothing from the database
    # (``written`` knows the children and their passes, and there are no budgets to look up).
    with sending_ahead(session, enabled=no_budgets_yet) as ahead:
        for holders in _candidate_slices(session, candidates, written):
            holder_ids = [holder_id for holder_id, _, _ in holders]
            judged = _NOTHING_JUDGED
            if running:
                judged = _judge_slice(session, vault, running, holders, holder_ids, known_birth_dates, actor,
                                      no_budgets_yet,
                                      written.pass_facts_of(holder_ids) if written is not None else None)
            opened = ledger.open_rule_budgets(session, judged.new_by_rule, actor, alone=no_budgets_yet,
                                              ahead=ahead) if judged.new_by_rule else 0
            summary = GrantSummary(summary.children_judged + len(holders), summary.budgets_opened + opened,
                                   summary.budgets_topped_up + judged.topped_up,
                                   summary.cents_granted + judged.cents_granted)
    if judged_under != rules_key:  # an unchanged night writes nothing here
        _note_judged(session, source, rules_key)
    return summary


def forget_judgement(session: Session, source: str) -> None:
    """Have the next grants of ``source`` judge every active child: its children changed while no rules judged
    them (a sync without budget rules)."""
    session.execute(delete(GrantJudgement).where(GrantJudgement.source == source))


def _judged_under(session: Session, source: str) -> str | None:
    return session.execute(select(GrantJudgement.rules_key).where(GrantJudgement.source == source)).scalar()


def _note_judged(session: Session, source: str, rules_key: str) -> None:
    # One run per source at a time (adapter.sync_lock): nobody else writes this row meanwhile.
    judgement = session.get(GrantJudgement, source)
    if judgement is None:
        session.add(GrantJudgement(source=source, rules_key=rules_key, judged_at=utcnow()))
    else:
        judgement.rules_key, judgement.judged_at = rules_key, utcnow()
    session.flush()


def _active_ids(session: Session, source: str, active_holders: Sequence[int] | None) -> Sequence[int]:
    """Every active cardholder of ``source``, ascending: ``active_holders`` when the caller knows them (on a first
    sync a range, not a list), else as read."""
    if active_holders is not None:
        return active_holders
    return session.connection().execute(
        select(Cardholder.id).where(Cardholder.source == source, Cardholder.status == HolderStatus.ACTIVE)
        .order_by(Cardholder.id)).scalars().all()


def _active_among(session: Session, source: str, changed: Iterable[int],
                  active_holders: Sequence[int] | None) -> list[int]:
    """The active cardholders of ``source`` among ``changed``, each once, ascending: a night's few hundred."""
    ids = sorted(set(changed))
    if active_holders is not None:
        return [holder_id for holder_id in ids if _holds(active_holders, holder_id)]
    active: list[int] = []
    for start in range(0, len(ids), _CHUNK):
        active.extend(session.connection().execute(
            select(Cardholder.id).where(Cardholder.id.in_(ids[start:start + _CHUNK]), Cardholder.source == source,
                                        Cardholder.status == HolderStatus.ACTIVE)).scalars())
    return sorted(active)


def _holds(ascending: Sequence[int], holder_id: int) -> bool:
    at = bisect.bisect_left(ascending, holder_id)
    return at < len(ascending) and ascending[at] == holder_id


def _candidate_slices(session: Session, ids: Iterable[int], written: HolderFactsById | None
                      ) -> Iterator[list[tuple]]:
    """The children to judge, (id, personal token, is_child), in id order, _JUDGE_SLICE at a time.

    Each slice is read by its ids alone (``_within``), never by the candidate conditions again: SQLite
    would answer those by scanning every cardholder of the source once per slice. The personal tokens
    are read only for a slice with a child whose birth date the caller does not know: on a first sync
    it knows them all, and the tokens are most of what the slice's rows weigh.

    A slice is not read at all when the caller wrote every one of its children (``written`` knows their
    dates and flags, and that they exist): on a first sync of 200,000 cardholders that read took 0.3-0.4 s
    of SQLite.
    """
    known_birth_dates: Mapping[int, date | None] = written if written is not None else {}
    connection = session.connection()
    remaining = iter(ids)
    while wanted := list(itertools.islice(remaining, _JUDGE_SLICE)):
        flags = written.child_flags_of(wanted) if written is not None else None
        if flags is not None:
            yield list(zip(wanted, itertools.repeat(None), flags))
            continue
        chosen = set(wanted)
        token = (Cardholder.personal_encrypted if not all(holder_id in known_birth_dates for holder_id in wanted)
                 else null().label("personal_encrypted"))
        yield [row for row in connection.execute(
            select(Cardholder.id, token, Cardholder.is_child)
            .where(_within(Cardholder.id, wanted)).order_by(Cardholder.id)
        ).all() if row[0] in chosen]


def _within(column, ids: Sequence[int]):  # type: ignore[no-untyped-def]
    """``column`` (a cardholder id) among ``ids`` (ascending): their range when they fill much of it, as
    a first sync's do (one scan of an index), else the ids themselves: a changed night judges a few
    hundred children spread over every id, and their range would read every cardholder, pass and budget."""
    if len(ids) * _SPARSE_BELOW >= ids[-1] - ids[0] + 1:
        return column.between(ids[0], ids[-1])
    return column.in_(ids)


def _set_bands(session: Session, bands: list[dict[str, object]]) -> None:
    """``bands``: {"budget_id", "band"} of each budget whose band to set."""
    if bands:
        session.connection().execute(update(Budget.__table__).where(Budget.__table__.c.id == bindparam("budget_id"))
                                     .values(age_band=bindparam("band")), bands)


def expire_ended(session: Session, today: date, grace_days: int = 0, actor: str = "rollover") -> int:
    """Close every open budget whose period ended more than ``grace_days`` ago; return how many."""
    ended = session.execute(
        select(Budget.id).where(Budget.status == BudgetStatus.OPEN,
                                Budget.period_end < earliest_spendable_end(today, grace_days))
        .order_by(Budget.id)
    ).scalars().all()
    return ledger.expire_many(session, ended, actor, note="period ended")


class _SliceJudged(NamedTuple):
    """What judging a slice of children found: its new budgets, rule by rule as ``ledger.open_rule_budgets``
    takes them, and the budgets it topped up on the way (those are written at once)."""

    new_by_rule: list[tuple[tuple, list[tuple[int, int]]]]
    topped_up: int
    cents_granted: int  # of the top-ups and the new budgets both


_NOTHING_JUDGED = _SliceJudged([], 0, 0)  # no rules run today: the children are only marked judged


def _judge_slice(session, vault, running, holders, holder_ids, known_birth_dates,  # type: ignore[no-untyped-def]
                 actor: str, no_budgets_yet: bool = False,
                 known_passes: Sequence[tuple[StoredPassFacts, ...]] | None = None) -> _SliceJudged:
    """``known_passes``: the passes of each of ``holder_ids``, when the caller knows them all (a first load's
    sync, see ``HolderFactsById.pass_facts_of``); else they are read here."""
    # Each pass as a plain (state, valid from, valid until) tuple, the state as its stored text: a first sync
    # judges every pass, and plain tuples are cheap to build, hash and compare (see ``entitlements`` below).
    passes_by_holder: Mapping[int, Sequence[StoredPassFacts]]
    if known_passes is not None:
        passes_by_holder = dict(zip(holder_ids, known_passes))
    else:
        passes_by_holder = defaultdict(list)
        # By the slice's ids on the passes' and budgets' own indexed column, nothing else: rows of children
        # outside the slice's candidates (within its range) are never looked up below (by holder id).
        for holder_id, *facts in session.connection().execute(
            select(Pass.cardholder_id, type_coerce(Pass.status, String), Pass.valid_from, Pass.valid_until)
            .where(_within(Pass.cardholder_id, holder_ids))
        ).all():
            passes_by_holder[holder_id].append(tuple(facts))  # type: ignore[arg-type]
    codes = {rule.code for rule, _ in running}
    # Each stored budget of the slice's children under the running rules, as its row (id, granted_cents, status,
    # period_start, period_end, age_band), by child, rule and key.
    existing = {} if no_budgets_yet else {
        (row.cardholder_id, row.rule_code, row.period_key): row
        for row in session.connection().execute(
            select(Budget.id, Budget.cardholder_id, Budget.rule_code, Budget.period_key, Budget.granted_cents,
                   Budget.status, Budget.period_start, Budget.period_end, Budget.age_band)
            .where(_within(Budget.cardholder_id, holder_ids), Budget.rule_code.in_(codes))).all()
    }
    # Each child's budgets of each rule, whatever their key: a budget's key is "once" for a once-rule and the
    # period's otherwise, so a rule whose once flag was flipped finds none under its new key (_under_another_key).
    by_rule_of: dict[tuple[int, str], list[Any]] = defaultdict(list)
    for (holder_id, code, _key), found in existing.items():
        by_rule_of[(holder_id, code)].append(found)
    # The slice's new budgets, by rule (in the order of ``running``) and age band: (child, amount in cents) of
    # each. They go in together: one insert for each rule and band, one copy of their first grants. A first sync
    # opens about two a child, 9,000 a slice. Opened 5,000 at a time, a first sync of 200,000 made twice the
    # statements (400 COPYs of budgets on PostgreSQL instead of 200) and its grants took 0.4 s longer there. The
    # slice bounds the memory: _JUDGE_SLICE children, a budget per rule at most.
    new_by_rule: dict[tuple[int, str], list[tuple[int, int]]] = {}
    topped_up = cents = 0
    keys = [rule.budget_key(period) for rule, period in running]
    # What every new budget under a rule shares: the NewBudget fields between the child and the amount, but
    # for the age band.
    shared = [(rule.code, rule.name, rule.version, rule.category, period_key, period.start, period.end)
              for (rule, period), period_key in zip(running, keys)]
    # Children of the same ages on the rules' reference days (see rules.age_days) and on the periods' first days
    # (which set a budget's age band) with the same pass facts are entitled to the same amounts in the same
    # bands: a slice of 5,000 children has a few dozen such combinations (by birth date it had thousands; pass
    # facts that differ from child to child make more), so each is judged once.
    judged_days = tuple(sorted({*age_days(running), *(period.start for _, period in running)}))
    # Per combination, for each rule: the amount, and the list its new budgets go to (their rule's and band's).
    entitlements: dict[tuple, list[tuple[int, str, list[tuple[int, int]]]]] = {}
    updated_bands: list[dict[str, object]] = []
    for holder_id, personal_token, is_child in holders:
        passes = passes_by_holder.get(holder_id)
        if is_child is False or not passes:
            continue
        birth_date = _birth_date(vault, holder_id, personal_token, known_birth_dates)
        ages = None if birth_date is None else tuple([age_on(birth_date, day) for day in judged_days])
        facts = (ages, is_child, tuple(passes))
        judged = entitlements.get(facts)
        if judged is None:
            pass_facts = [PassFacts(*card) for card in passes]
            judged = entitlements[facts] = []
            for index, (rule, period) in enumerate(running):
                band = age_bands.band_of(birth_date, period.start)
                judged.append((rule.entitlement_cents(period, birth_date, is_child, pass_facts), band,
                               new_by_rule.setdefault((index, band), [])))
        for (rule, period), period_key, (entitled_cents, band, new_budgets) in zip(running, keys, judged):
            found = existing.get((holder_id, rule.code, period_key)) if existing else None
            if found is None and existing:
                found = _under_another_key(by_rule_of.get((holder_id, rule.code), ()), rule.once, period)
            if found is not None and found.age_band != band and found.period_start == period.start:
                # The source corrected the child's birth date since the budget was opened: also when that takes
                # the child out of the rule, the budget it keeps is counted in its new band.
                updated_bands.append({"budget_id": found.id, "band": band})
            if entitled_cents <= 0:
                continue
            if found is None:
                new_budgets.append((holder_id, entitled_cents))
                cents += entitled_cents
                continue
            # A once-rule's budget of an earlier period is still open in its grace days: what is raised now is
            # not for it (it expires within days), and the child had its once.
            if (found.status == BudgetStatus.OPEN and entitled_cents > found.granted_cents
                    and found.period_start == period.start):
                # The rule's amount rose in a running period: top up, never take back.
                ledger.grant(session, found.id, entitled_cents - found.granted_cents, actor,
                             note=f"top-up to rule {rule.code} version {rule.version}")
                session.execute(update(Budget).where(Budget.id == found.id).values(rule_version=rule.version)
                                .execution_options(synchronize_session=False))
                topped_up += 1
                cents += entitled_cents - found.granted_cents
    _set_bands(session, updated_bands)
    return _SliceJudged([((*shared[index], band), budgets) for (index, band), budgets in new_by_rule.items()
                         if budgets], topped_up, cents)


def _under_another_key(budgets: Sequence[Any], once: bool, period) -> Any:  # type: ignore[no-untyped-def]
    """Of a child's ``budgets`` of a rule under other keys (rows as ``existing`` holds them), the one that is
    already its budget for ``period``: one over the period's own days (the rule was made periodic, or once,
    since), else for a once-rule any (the child had its once under the rule as it was). Without it, every child
    got a second budget, money twice."""
    for found in budgets:
        if (found.period_start, found.period_end) == (period.start, period.end):
            return found
    if once and budgets:
        return max(budgets, key=lambda found: found.period_start)
    return None


def _birth_date(vault: Vault, holder_id: int, token: str | None, known: Mapping[int, date | None]) -> date | None:
    if holder_id in known:
        return known[holder_id]
    return open_sealed(vault, token).birth_date
