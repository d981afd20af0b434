"""``adapter.waiting_lines`` alone: what it keeps while the export is read, and what replay() puts back.

The planner-level promise (waiting never changes a plan) is tested in ``tests/sync/test_waiting_lines.py``;
these tests pin the contract the planner builds on."""

from __future__ import annotations

import dataclasses
from datetime import date

from adapter.records import CardholderRecord
from adapter.waiting_lines import BSN, HOLDER, HOUSEHOLD, NUMBER, WaitingLines


def _tables() -> tuple[dict, ...]:
    return ({}, {}, {}, {})


def _record(number: int) -> CardholderRecord:
    return CardholderRecord(
        source_key=f"line {number}", household_id=f"H{number // 3:04d}", cardholder_id=f"K{number:05d}",
        pass_number=f"64{number:08d}", bsn=None, first_names="Kind", surname="Jansen",
        birth_date=date(2015, 1, 1), valid_from=date(2026, 1, 1), valid_until=date(2026, 12, 31))


def test_while_reading_keys_go_to_the_log_not_the_tables_unless_at_once():
    tables = _tables()
    waiting = WaitingLines(tables)
    try:
        waiting.enter(NUMBER, "6400000001", None)
        waiting.enter(HOLDER, "K00001", 0)
        waiting.enter(BSN, b"stored", "K00002", at_once=True)  # the planner's stored BSNs
        assert tables == ({}, {}, {b"stored": "K00002"}, {})
    finally:
        waiting.close()


def test_replay_fills_the_tables_with_the_wanted_keys_only_then_enters_directly():
    tables = _tables()
    waiting = WaitingLines(tables)
    try:
        for number in range(50):
            waiting.enter(NUMBER, f"64{number:08d}", None)
            waiting.enter(HOLDER, f"K{number:05d}", number)
            waiting.enter(HOUSEHOLD, f"H{number:04d}", number)
        waiting.hold(7, _record(1_000), b"waiting-bsn", "K00003")  # its keys are wanted
        # What a waiting line asks about without carrying it: the pass it replaces, the household it joins.
        waiting.hold(8, dataclasses.replace(_record(1_001), household_id="H0011", replaces_pass_number="6400000004"),
                     None, None)
        waiting.replay({"6400000002"}, {"H0005"})
        assert tables[NUMBER] == {"6400000002": None, "6400000004": None}
        assert tables[HOLDER] == {"K00003": 3}  # the stored owner of the waiting line's BSN
        assert tables[HOUSEHOLD] == {"H0005": 5, "H0011": 11}
        assert waiting.exact and [(position, record.source_key) for position, record in waiting] == [
            (7, "line 1000"), (8, "line 1001")]
        waiting.enter(HOLDER, "K09999", 42)
        assert tables[HOLDER]["K09999"] == 42
    finally:
        waiting.close()


def test_a_line_waits_for_the_keys_of_the_waiting_ones():
    waiting = WaitingLines(_tables())
    try:
        assert not waiting.waits_for("6400000001", "K00001")
        assert not waiting.waits_for_bsn(b"bsn", {b"bsn": "K00002"})
        waiting.hold(1, _record(1), b"bsn-1", "K00002")
        assert waiting.waits_for("6400000001", "K99999") and waiting.waits_for("6499999999", "K00001")
        assert not waiting.waits_for("6499999999", "K99999")
        assert waiting.waits_for_bsn(b"bsn-1", {})
        # A line whose BSN is held by the stored cardholder the waiting line may claim.
        assert waiting.waits_for_bsn(b"other", {b"other": "K00002"})
        assert not waiting.waits_for_bsn(b"other", {b"other": "K00005"})
        assert len(waiting) == 1
    finally:
        waiting.close()


def test_the_filter_remembers_what_it_was_asked_by_kind():
    waiting = WaitingLines(_tables())
    try:
        keys = [f"K{number:07d}" for number in range(200)]
        assert not any(waiting.maybe_seen(key, HOLDER) for key in keys)
        assert all(waiting.maybe_seen(key, HOLDER) for key in keys)
        assert not any(waiting.maybe_seen(key, NUMBER) for key in keys)  # another kind: another key
    finally:
        waiting.close()
