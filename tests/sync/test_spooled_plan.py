"""A sync's planned lines and writes wait on disk (``adapter.spool``), one line in memory at a time, and their
files are gone once the run is over, however it ends."""

from __future__ import annotations

import gc
import os
from datetime import date

import pytest

import adapter.sync as sync
import adapter.waiting_lines as waiting_lines
from adapter.settings import SyncSettings
from adapter.sync import run_sync
from adapter.plan_writes import HolderWrite, PassWrite
from adapter.sync_plan import Planner, _PassLine
from tests.sync.records import SIMPLE_RULES, SYNC_SETTINGS, TODAY, EveryLineWaits, household_records


def _unnamed_files_open() -> int:
    """How many deleted files this process holds open: the spools and the sealer's file are such files."""
    count = 0
    for descriptor in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{descriptor}").endswith("(deleted)")
        except OSError:
            continue
    return count


def _sync(db, vault, records, **options):  # type: ignore[no-untyped-def]
    return run_sync(db, vault, "gemeente", records, settings=options.pop("settings", SYNC_SETTINGS),
                    rules=SIMPLE_RULES, today=TODAY, **options)


def test_the_lines_and_writes_wait_on_disk_and_finish_holds_one_line_at_a_time(db, vault, monkeypatch):
    """A first sync plans a write for every line before the guard may judge the run. Held as objects, the
    lines and the writes were most of that sync's memory."""
    records = household_records(1000)  # more lines than a spool chunk (2,000): each spool writes its file
    judged = 0
    alive_at_last_line: list[int] = []
    judge_pass = Planner._judge_pass

    def counting_judge(self, line, *args):  # type: ignore[no-untyped-def]
        nonlocal judged
        judged += 1
        if judged == len(records):
            gc.collect()
            alive_at_last_line.append(sum(1 for thing in gc.get_objects() if isinstance(thing, _PassLine)))
        return judge_pass(self, line, *args)

    plans = []
    at_the_guard: list[tuple[int, int, int, int]] = []
    files_before = _unnamed_files_open()
    guard = sync.guard

    def looking_at_the_plan(plan, settings):  # type: ignore[no-untyped-def]
        gc.collect()
        in_memory = sum(1 for thing in gc.get_objects() if isinstance(thing, (HolderWrite, PassWrite, _PassLine)))
        at_the_guard.append((len(plan.holders), len(plan.passes), in_memory, _unnamed_files_open() - files_before))
        plans.append(plan)
        return guard(plan, settings)

    monkeypatch.setattr(Planner, "_judge_pass", counting_judge)
    monkeypatch.setattr(sync, "guard", looking_at_the_plan)
    result = _sync(db, vault, records)

    assert result.created == len(records)
    assert alive_at_last_line == [1]  # the line being judged, and none of the lines before it
    holders = len({record.cardholder_id for record in records})
    # At the guard: the writes counted, none of them (nor a line) as an object, and three files: the
    # sealer's and the two of the plan. The planner's lines are deleted once judged.
    assert at_the_guard == [(holders, len(records), 0, 3)]
    for writes in (plans[0].holders, plans[0].passes):
        with pytest.raises(RuntimeError, match="closed"):
            list(writes)


def _failing(*_args, **_kwargs):  # type: ignore[no-untyped-def]
    raise RuntimeError("broken on purpose")


def _records_then_failing(records):  # type: ignore[no-untyped-def]
    yield from records
    raise RuntimeError("the source broke off")



@pytest.mark.parametrize("lines", ["judged while read", "every line waits"])
@pytest.mark.parametrize("ending", ["applied", "dry run", "refused", "reading fails", "planning fails",
                                    "applying fails"])
def test_no_file_of_the_run_is_left_behind(db, vault, monkeypatch, ending, lines):
    """Nor of the waiting lines (their records, BSNs included, wait encrypted in a file of their own)."""
    records = household_records(1200)  # more lines than a spool chunk: every file is written to
    held: list[int] = []
    if lines == "every line waits":
        monkeypatch.setattr(waiting_lines, "MaybeSeen", EveryLineWaits)
        hold = waiting_lines.WaitingLines.hold
        monkeypatch.setattr(waiting_lines.WaitingLines, "hold",
                            lambda self, position, *rest: (held.append(position), hold(self, position, *rest))[1])
    options: dict = {}
    if ending == "refused":
        _sync(db, vault, records)
        records = records[:10]  # most passes would go missing: the guard refuses
    elif ending == "dry run":
        options["dry_run"] = True
    elif ending == "reading fails":
        records = _records_then_failing(records)
    elif ending == "planning fails":
        monkeypatch.setattr(Planner, "_plan_absences", _failing)
    elif ending == "applying fails":
        monkeypatch.setattr(sync, "_write_replacements", _failing)
    files_before = _unnamed_files_open()

    if ending.endswith("fails"):
        with pytest.raises(RuntimeError):
            _sync(db, vault, records, settings=SyncSettings())
    else:
        result = _sync(db, vault, records, settings=SyncSettings(), **options)
        assert result.status.value == {"applied": "succeeded", "dry run": "dry_run", "refused": "refused"}[ending]

    assert _unnamed_files_open() == files_before
    assert len(held) >= (1000 if lines == "every line waits" else 0)  # they did wait


def test_a_planned_cardholder_write_shows_no_birth_date_in_its_repr():
    # The birth date rides along for the grants; a write put in a message must not carry it (no mask knows a date).
    write = HolderWrite("P001", 1, None, "a" * 32, None, True, date(2015, 5, 5))
    assert "2015" not in repr(write) and "P001" in repr(write)
    assert write.birth_date == date(2015, 5, 5)
