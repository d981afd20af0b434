"""A bench run's targets beside earlier runs': worse or better only when the runs' spreads do not overlap."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench import compare
from bench.report import markdown
from tests.conftest import REPO

FIRST = "first full sync on sqlite <= 4x (parse + bulk load + one MultiFernet encryption per row)"
CHECKS = "balance checks/s >= 50% of the one-SELECT floor (2 workers)"
SIZES = {"rows": 200_000, "soap_rows": 200_000, "scaling": [10_000, 100_000], "workers": [2], "load_seconds": 10.0,
         "api_passes": 10_000, "smoke": False}


def figure(runs: list[float], **extra: object) -> dict:
    return {"available": True, "name": "a figure", "unit": "s", "median": sorted(runs)[len(runs) // 2],
            "min": min(runs), "max": max(runs), "runs": runs, **extra}


def result(commit: str, *, first: list[float] | None = None, floor: list[float] | None = None,
           checks: list[float] | None = None, select: list[float] | None = None, **sizes: object) -> dict:
    """A result file's content: a first sync beside the floor measured before each run, and balance checks
    beside the one-SELECT floor measured once per part."""
    figures: dict = {}
    targets = []
    if first is not None and floor is not None:
        figures["sync_first_sqlite"], figures["floor_first_sync_sqlite"] = figure(first), figure(floor)
        ratios = sorted(value / base for value, base in zip(first, floor))
        value = ratios[len(ratios) // 2]
        targets.append({"key": "first_sync_sqlite", "description": FIRST, "direction": "<=", "limit": 4.0,
                        "value": value, "met": value <= 4.0, "figures": ["sync_first_sqlite", "floor_first_sync_sqlite"]})
    if checks is not None and select is not None:
        figures["api_balance_checks_w2"], figures["api_floor_select_w2"] = figure(checks), figure(select)
        value = figures["api_balance_checks_w2"]["median"] / figures["api_floor_select_w2"]["median"]
        targets.append({"key": "balance_checks_w2", "description": CHECKS, "direction": ">=", "limit": 0.5,
                        "value": value, "met": value >= 0.5,
                        "figures": ["api_balance_checks_w2", "api_floor_select_w2"]})
    return {"meta": {"date": "2026-12-01", "commit": commit, "command": "python -m bench", "cpu_count": 2,
                     "python": "3.11.7", "config": {**SIZES, **sizes}}, "figures": figures, "targets": targets}


def test_a_ratio_against_floors_measured_beside_each_run_spreads_as_the_runs_own_ratios():
    # 10/2, 12/3, 9/3: 3 to 5. Against the floors' extremes it would be 9/3 to 12/2.
    measured = result("a", first=[10.0, 12.0, 9.0], floor=[2.0, 3.0, 3.0])
    assert compare.spread(measured, measured["targets"][0]) == pytest.approx((3.0, 5.0))


def test_a_ratio_against_a_floor_measured_apart_spreads_over_both_extremes():
    # Balance checks 900-1,100 req/s, the floor 1,800-2,200 measured in runs of their own: 900/2,200 to 1,100/1,800.
    measured = result("a", checks=[1_000.0, 900.0, 1_100.0], select=[2_000.0, 2_200.0, 1_800.0])
    assert compare.spread(measured, measured["targets"][0]) == pytest.approx((900 / 2_200, 1_100 / 1_800))


def test_a_latency_and_a_peak_rss_spread_over_their_own_extremes():
    figures = {"api_balance_checks_w2": figure([1.0], p99_ms={"median": 6.0, "min": 5.0, "max": 9.0}),
               "sync_scaling_1000": figure([1.0], peak_rss_mb={"median": 99.0, "min": 98.0, "max": 101.0}),
               "sync_scaling_10": figure([1.0], peak_rss_mb={"median": 90.0, "min": 88.0, "max": 90.0})}
    measured = {"figures": figures}
    assert compare.spread(measured, {"key": "p99_balance_checks_w2", "figures": ["api_balance_checks_w2"]}) == (5.0, 9.0)
    assert compare.spread(measured, {"key": "scaling_peak_rss", "figures": ["sync_scaling_1000"]}) == (98.0, 101.0)
    assert compare.spread(measured, {"key": "scaling_rss_flat", "figures": ["sync_scaling_1000", "sync_scaling_10"]}
                          ) == pytest.approx((98 / 90, 101 / 88))
    assert compare.spread(measured, {"key": "p99_redemptions_w2", "figures": ["api_redemptions_w2"]}) is None


@pytest.mark.parametrize(("direction", "now", "then", "said"), [
    ("<=", (5.1, 5.5), (4.0, 5.0), "worse"),
    ("<=", (3.0, 3.9), (4.0, 5.0), "better"),
    ("<=", (4.8, 6.0), (4.0, 5.0), "within the runs' spread"),
    (">=", (0.40, 0.45), (0.50, 0.60), "worse"),
    (">=", (0.61, 0.70), (0.50, 0.60), "better"),
    (">=", (0.45, 0.55), (0.50, 0.60), "within the runs' spread"),
    ("<=", None, (4.0, 5.0), "no spread to judge by"),
])
def test_worse_or_better_only_when_the_spreads_do_not_overlap(direction, now, then, said):
    assert compare.verdict(direction, now, then, change=0.2) == said


def test_a_move_of_less_than_five_percent_is_neither_worse_nor_better_however_steady_the_runs():
    # A peak RSS: 97.9 MB in every run, then 99.1 MB in every run.
    assert compare.verdict("<=", (99.1, 99.1), (97.9, 97.9), change=99.1 / 97.9 - 1) == "less than 5% apart"
    assert compare.verdict("<=", (104.0, 104.0), (97.9, 97.9), change=104.0 / 97.9 - 1) == "worse"


def test_each_target_is_compared_with_the_newest_earlier_run_that_measured_it_with_the_same_sizes():
    now = result("new", first=[12.0, 12.5, 13.0], floor=[2.0, 2.0, 2.0], checks=[1_000.0] * 3, select=[2_000.0] * 3)
    earlier = [
        ("other-rows.json", result("c1", first=[4.0] * 3, floor=[2.0] * 3, rows=50_000)),  # other sizes: passed over
        ("api-only.json", result("c1", checks=[1_300.0] * 3, select=[2_000.0] * 3)),  # no first sync measured
        ("full.json", result("c2", first=[8.0, 8.5, 9.0], floor=[2.0] * 3, checks=[900.0] * 3, select=[2_000.0] * 3)),
    ]
    compared = {item.key: item for item in compare.compare(now, earlier)}
    first, checks = compared["first_sync_sqlite"], compared["balance_checks_w2"]
    assert (first.earlier, first.then, first.now) == ("full.json", 4.25, 6.25)
    assert first.verdict == "worse" and first.change == pytest.approx(6.25 / 4.25 - 1)
    assert (checks.earlier, checks.then, checks.now, checks.verdict) == ("api-only.json", 0.65, 0.5, "worse")


def test_a_run_s_own_result_compares_with_files_though_it_holds_tuples_where_they_hold_lists():
    now = result("new", first=[8.0] * 3, floor=[2.0] * 3, scaling=(10_000, 100_000), workers=(2,))
    assert [item.earlier for item in compare.compare(now, [("old.json", result("old", first=[8.0] * 3,
                                                                                 floor=[2.0] * 3))])] == ["old.json"]


def test_a_target_not_measured_now_or_worded_otherwise_then_is_not_compared():
    now = result("new", first=[8.0] * 3, floor=[2.0] * 3)
    reworded = result("old", first=[8.0] * 3, floor=[2.0] * 3)
    reworded["targets"][0]["description"] = "first full sync on sqlite <= 5x"
    assert compare.compare(now, [("reworded.json", reworded)]) == []
    unmeasured = result("new", first=[8.0] * 3, floor=[2.0] * 3)
    unmeasured["targets"][0]["value"] = None
    assert compare.compare(unmeasured, [("old.json", result("old", first=[8.0] * 3, floor=[2.0] * 3))]) == []


def test_earlier_results_come_in_the_order_of_the_history_and_leave_the_run_itself_out(tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    for name, commit in (("2026-11-29-aaaa111.json", "aaaa111"), ("2026-11-30-bbbb222.json", "bbbb222"),
                         ("2026-11-30-bbbb222-api-rerun.json", "bbbb222"), ("2026-12-01-cccc333.json", "cccc333")):
        (folder / name).write_text(json.dumps(result(commit)), encoding="utf-8")
    (folder / "notes.json").write_text("[1, 2]", encoding="utf-8")  # not a result file
    history = ["bbbb2229999", "dddd444", "aaaa1118888"]  # cccc333 is not on this branch
    found = compare.earlier_results(history, [folder, folder], leave_out=folder / "2026-11-30-bbbb222.json")
    assert [name for name, _ in found] == ["2026-11-30-bbbb222-api-rerun.json", "2026-11-29-aaaa111.json"]


def test_the_history_starts_before_the_commit_measured():
    head, parent = (subprocess.run(["git", "rev-parse", revision], cwd=REPO, capture_output=True, text=True,
                                   check=True).stdout.strip() for revision in ("HEAD", "HEAD^"))
    history = compare.history(head[:7])
    assert history is not None and history[0] == parent and head not in history
    assert compare.history("not-a-commit") is None


def test_the_report_shows_the_comparison_and_says_why_when_there_is_none():
    now = result("new", first=[12.0] * 3, floor=[2.0] * 3)
    now["since"] = {"compared": [item.as_dict() for item in compare.compare(
        now, [("full.json", result("old", first=[8.0] * 3, floor=[2.0] * 3))])], "reason": None}
    report = markdown(now)
    assert "## Since earlier runs" in report
    assert f"| {FIRST} | full.json | 4 | 6 | +50% | **worse** |" in report
    now["since"] = {"compared": [], "reason": "no earlier run of this branch measured these targets"}
    assert "Nothing compared: no earlier run of this branch measured these targets." in markdown(now)
    del now["since"]
    assert "Since earlier runs" not in markdown(now)


def test_the_command_compares_two_files(tmp_path):
    new, old = tmp_path / "new.json", tmp_path / "old.json"
    new.write_text(json.dumps(result("new", checks=[1_000.0] * 3, select=[2_000.0] * 3)), encoding="utf-8")
    old.write_text(json.dumps(result("old", checks=[1_400.0] * 3, select=[2_000.0] * 3)), encoding="utf-8")
    completed = subprocess.run([sys.executable, "-m", "bench.compare", str(new), "--with", str(old)], cwd=REPO,
                               capture_output=True, text=True, check=True)
    assert f"| {CHECKS} | old.json | 0.7 | 0.5 | -29% | **worse** |" in completed.stdout
    old.write_text(json.dumps(result("old", checks=[1_000.0] * 3, select=[2_000.0] * 3, rows=10)), encoding="utf-8")
    completed = subprocess.run([sys.executable, "-m", "bench.compare", str(new), "--with", str(old)], cwd=REPO,
                               capture_output=True, text=True, check=True)
    assert "Nothing compared: old.json measured none of these targets with the same sizes." in completed.stdout
