"""The syncs' stage times: read from the sync's own summary line, reported as medians per stage."""

from __future__ import annotations

from bench.report import markdown
from bench.sync_bench import stages_said

SAID = ("sync bench run 1: succeeded in 8.4s (starting 0.01s, reading 3.59s, planning 0.52s, applying 2.02s, "
        "granting 2.26s); read 199944, created 199944, updated 0, unchanged 0, rejected 0, missing 0")


def test_the_stage_times_are_read_from_the_summary_in_their_order():
    assert stages_said(SAID) == {"starting": 0.01, "reading": 3.59, "planning": 0.52, "applying": 2.02,
                                 "granting": 2.26}
    assert list(stages_said(SAID)) == ["starting", "reading", "planning", "applying", "granting"]


def test_a_summary_without_stage_times_gives_none():
    assert stages_said("sync bench run 1: succeeded in 19.1s; read 199944, created 199944") is None
    assert stages_said(None) is None


def _result(figures: dict) -> dict:
    return {"meta": {"date": "2026-11-30", "commit": "abc1234", "command": "python -m bench", "cpu_count": 2,
                     "python": "3.11.7"}, "targets": [], "figures": figures}


def test_the_report_gives_each_stage_s_median_over_the_runs_of_each_sync():
    runs = [{"reading": 4.0, "granting": 2.0}, {"reading": 5.0, "granting": 3.0}, {"reading": 9.0, "granting": 2.5}]
    staged = {"available": True, "name": "first full sync, sqlite", "unit": "s", "median": 9.0, "min": 8.0,
              "max": 12.0, "runs": [8.0, 9.0, 12.0], "stages": runs}
    plain = {"available": True, "name": "raw csv parse", "unit": "s", "median": 0.2, "min": 0.2, "max": 0.2,
             "runs": [0.2]}
    report = markdown(_result({"sync_first_sqlite": staged, "floor_csv_parse": plain}))
    assert "## Stages of the syncs" in report
    assert "| figure | reading | granting |" in report
    assert "| first full sync, sqlite | 5 | 2.5 |" in report
    assert "raw csv parse |" not in report.split("## Stages of the syncs")[1]


def test_a_report_without_stage_times_has_no_stage_table():
    plain = {"available": True, "name": "raw csv parse", "unit": "s", "median": 0.2, "min": 0.2, "max": 0.2,
             "runs": [0.2]}
    assert "Stages" not in markdown(_result({"floor_csv_parse": plain}))
