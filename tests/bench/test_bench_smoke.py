"""`python -m bench --smoke` must keep working: every figure present and numeric (no speed asserted here).

A figure may say "not available" only when this checkout truly lacks its
interface (no sync command, no counter endpoint); a broken interface fails.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from bench.report import targets
from tests.conftest import REPO, postgres_url_or_skip, service_missing

SMOKE_SIZES = {"scaling": (200, 2_000), "databases": ("sqlite", "postgres"), "workers": (2,)}


def sync_interface_present() -> bool:
    if importlib.util.find_spec("adapter.sync") is None:
        return False
    from adapter.cli import cli

    return "sync" in cli.commands


def api_routes() -> set[str]:
    from adapter.api import create_app
    from tests.conftest import make_settings

    app = create_app(settings=make_settings(Path(tempfile.mkdtemp(prefix="bench-routes-")), "sqlite://"))
    return {rule.rule for rule in app.url_map.iter_rules()}


def expected_figures() -> dict[str, str | None]:
    """Figure key -> the interface it needs (None: always measurable)."""
    keys: dict[str, str | None] = {name: None for name in (
        "floor_csv_parse", "floor_parse_validate_hash", "floor_encrypt", "floor_zeep_parse")}
    for kind in SMOKE_SIZES["databases"]:
        keys[f"floor_bulk_load_{kind}"] = None
        keys[f"floor_parse_validate_hash_{kind}"] = "sync"  # measured beside the re-syncs
        keys[f"floor_first_sync_{kind}"] = "sync"  # measured before each first sync
        keys.update({f"sync_{stage}_{kind}": "sync" for stage in ("first", "resync", "changed")})
    keys.update({f"sync_scaling_{size}": "sync" for size in SMOKE_SIZES["scaling"]})
    keys["sync_soap"] = "sync"
    for workers in SMOKE_SIZES["workers"]:
        keys.update({f"api_floor_{name}_w{workers}": None for name in ("hello", "select", "write")})
        keys[f"api_balance_checks_w{workers}"] = "/v1/balance-checks"
        keys.update({f"api_{name}_w{workers}": "/v1/redemptions" for name in ("redemptions", "redemptions_one_budget")})
    return keys


@pytest.fixture(scope="module")
def smoke_result(tmp_path_factory) -> dict:
    server = postgres_url_or_skip()
    if shutil.which("wrk") is None:
        service_missing("the API bench needs wrk (apt-get install wrk; .ci/run installs it)")
    out = tmp_path_factory.mktemp("bench-results")
    before = set((REPO / "bench" / "results").glob("*")) if (REPO / "bench" / "results").exists() else set()
    completed = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--out", str(out),
                                "--postgres-server", server], cwd=REPO, capture_output=True, text=True, timeout=300,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    assert completed.returncode == 0, completed.stderr[-3000:] + completed.stdout[-3000:]
    after = set((REPO / "bench" / "results").glob("*")) if (REPO / "bench" / "results").exists() else set()
    assert after == before, "the smoke run must not write into bench/results"
    results = list(out.glob("*.json"))
    assert len(results) == 1 and results[0].with_suffix(".md").exists()
    return json.loads(results[0].read_text(encoding="utf-8"))


def _numeric(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@pytest.mark.postgres
def test_every_figure_is_present_and_numeric(smoke_result):
    figures = smoke_result["figures"]
    routes = api_routes()
    present = {"sync": sync_interface_present()}
    for key, needs in expected_figures().items():
        assert key in figures, f"{key} missing from the result"
        figure = figures[key]
        assert "error" not in figure, f"{key}: {figure.get('error')}"
        interface_there = needs is None or (present["sync"] if needs == "sync" else needs in routes)
        if not interface_there:
            assert figure["available"] is False and figure["reason"], key
            continue
        assert figure["available"] is True, f"{key}: {figure.get('reason')}"
        assert all(_numeric(figure[stat]) for stat in ("median", "min", "max")), key
        assert figure["min"] <= figure["median"] <= figure["max"] and figure["median"] > 0, key
        assert figure["runs"] and all(_numeric(run) for run in figure["runs"]), key
        if key.startswith(("sync_", "floor_")):
            assert _numeric(figure["peak_rss_mb"]["median"]) and figure["peak_rss_mb"]["median"] > 0, key
        if key.startswith("sync_"):
            assert _numeric(figure["machine_cpu_seconds"]["median"]) and figure["machine_cpu_seconds"]["min"] > 0, key
        if key.startswith("api_"):
            assert _numeric(figure["p50_ms"]["median"]) and _numeric(figure["p99_ms"]["median"]), key
            assert figure["errors"] == [0] * len(figure["runs"]), f"{key}: requests failed under load"
        if key.startswith("sync_resync_") or key.startswith("sync_changed_"):
            assert all(isinstance(run, dict) for run in figure["rows_written"]), key


SYNC_STAGES = ["starting", "reading", "planning", "applying", "granting"]


@pytest.mark.postgres
def test_each_sync_run_keeps_the_stage_times_the_sync_reported(smoke_result):
    syncs = [key for key in smoke_result["figures"] if key.startswith("sync_")]
    assert len(syncs) == 9  # first, re-sync and changed night on two databases, two scaling sizes, SOAP
    for key in syncs:
        figure = smoke_result["figures"][key]
        assert len(figure["stages"]) == len(figure["runs"]), key
        for stages, seconds in zip(figure["stages"], figure["runs"]):
            # A run that writes ends with its commit (a first sync always does); an unchanged night writes nothing.
            assert list(stages)[:len(SYNC_STAGES)] == SYNC_STAGES, key
            last = list(stages)[len(SYNC_STAGES):]
            assert (last == ["committing"]) if key.startswith("sync_first_") else (last in ([], ["committing"])), key
            assert all(_numeric(value) for value in stages.values()), key
            assert sum(stages.values()) <= seconds, key  # the command's time also holds its start-up and exit


@pytest.mark.postgres
def test_the_run_says_what_it_compared_with_earlier_runs_or_why_nothing(smoke_result):
    since = smoke_result["since"]
    # The results kept in bench/results are full runs: none has the smoke run's sizes.
    assert since["compared"] == [] and "same sizes" in since["reason"]


@pytest.mark.postgres
def test_every_target_is_judged_when_its_figures_exist(smoke_result):
    figures = smoke_result["figures"]
    assert smoke_result["targets"], "no targets in the result"
    for target in smoke_result["targets"]:
        assert target["met"] in (True, False, None)
        measured = all(figures.get(key, {}).get("available") for key in target["figures"])
        if measured:
            assert _numeric(target["value"]) and target["met"] is not None, target["key"]
        else:
            assert target["value"] is None and target["reason"], target["key"]


def figure(median: float, **extra: object) -> dict:
    return {"available": True, "median": median, "min": median, "max": median, "runs": [median], **extra}


def test_targets_are_ratios_against_the_floors_of_the_same_run():
    figures = {
        "floor_csv_parse": figure(1.0), "floor_bulk_load_sqlite": figure(1.0), "floor_encrypt": figure(0.5),
        "sync_first_sqlite": figure(10.0), "floor_parse_validate_hash": figure(2.0),
        "sync_resync_sqlite": figure(3.0, rows_written=[{"cardholders": 0}, {"cardholders": 2}]),
        "sync_scaling_100": figure(1.0, peak_rss_mb={"median": 100.0}),
        "sync_scaling_1000": figure(12.0, peak_rss_mb={"median": 110.0}),
        "api_balance_checks_w2": figure(60.0, p99_ms={"median": 40.0}), "api_floor_select_w2": figure(100.0),
    }
    judged = {target["key"]: target for target in targets(figures, databases=["sqlite"], scaling=[100, 1000],
                                                          workers=[2])}
    assert judged["first_sync_sqlite"]["value"] == pytest.approx(4.0) and judged["first_sync_sqlite"]["met"] is True
    resync = judged["resync_sqlite"]
    assert resync["value"] == pytest.approx(1.5) and resync["met"] is False, "it wrote rows: not met"
    assert "wrote 2 rows" in resync["reason"]
    # The floor measured around the re-syncs, when the run has one, is the one a re-sync is weighed against:
    # run by run (3/1, 4/4, 5/2 -> median 2.5; the ratio of the medians would be 4/2).
    paired = {target["key"]: target for target in targets(
        {**figures, "sync_resync_sqlite": {**figure(4.0), "runs": [3.0, 4.0, 5.0], "rows_written": []},
         "floor_parse_validate_hash_sqlite": {**figure(2.0), "runs": [1.0, 4.0, 2.0]}},
        databases=["sqlite"], scaling=[], workers=[])}
    assert paired["resync_sqlite"]["value"] == pytest.approx(2.5) and paired["resync_sqlite"]["met"] is False
    assert "floor_parse_validate_hash_sqlite" in paired["resync_sqlite"]["figures"]
    # So is a first sync against the floor measured just before it: 9/2, 12/3, 8/4 -> median 4 (the ratio of the
    # medians would be 9/3, and against the floors measured at the part's start 9/2.5).
    first = {target["key"]: target for target in targets(
        {**figures, "sync_first_sqlite": {**figure(9.0), "runs": [9.0, 12.0, 8.0]},
         "floor_first_sync_sqlite": {**figure(3.0), "runs": [2.0, 3.0, 4.0]}},
        databases=["sqlite"], scaling=[], workers=[])}["first_sync_sqlite"]
    assert first["value"] == pytest.approx(4.0) and first["met"] is True
    assert first["figures"] == ["sync_first_sqlite", "floor_first_sync_sqlite"]
    assert judged["scaling_time"]["value"] == pytest.approx(12.0) and judged["scaling_time"]["met"] is False
    assert judged["scaling_peak_rss"]["met"] is True and judged["scaling_rss_flat"]["value"] == pytest.approx(1.1)
    assert judged["balance_checks_w2"]["value"] == pytest.approx(0.6) and judged["balance_checks_w2"]["met"] is True
    assert judged["p99_balance_checks_w2"]["met"] is True
    assert judged["redemptions_w2"]["met"] is None and "api_redemptions_w2" in judged["redemptions_w2"]["reason"]
    assert judged["soap_sync"]["met"] is None


def test_a_first_sync_says_how_much_of_the_machine_it_used_and_its_ratio_with_every_core_busy():
    floors = {"floor_csv_parse": figure(1.0), "floor_bulk_load_sqlite": figure(1.0), "floor_encrypt": figure(0.5)}
    # 12.5 s of wall time against a floor of 2.5 s is 5x; 20 busy core-seconds over 2 cores is 10 s, so 4x.
    timed = {**floors, "sync_first_sqlite": figure(12.5, machine_cpu_seconds={"median": 20.0})}
    first = {target["key"]: target for target in targets(timed, databases=["sqlite"], scaling=[], workers=[],
                                                         cores=2)}["first_sync_sqlite"]
    assert first["value"] == pytest.approx(5.0) and first["met"] is False
    assert "1.60 of 2 cores" in first["reason"] and "4.00x the floor" in first["reason"]
    untimed = {**floors, "sync_first_sqlite": figure(12.5)}
    assert targets(untimed, databases=["sqlite"], scaling=[], workers=[], cores=2)[0]["reason"] is None


def test_a_first_sync_says_how_it_stands_to_what_it_must_do_at_least():
    floors = {"floor_csv_parse": figure(0.5), "floor_bulk_load_sqlite": figure(1.0), "floor_encrypt": figure(1.0),
              "floor_parse_validate_hash": figure(3.0)}
    # 12.5 s against 2.5 s is 5x the floor; against parse + validate + hash, load and encryption (5 s), 2.5x.
    first = targets({**floors, "sync_first_sqlite": figure(12.5)}, databases=["sqlite"], scaling=[], workers=[])[0]
    assert first["value"] == pytest.approx(5.0)
    assert "5.00 s), it takes 2.50x" in first["reason"] and "validate + hash 3.00 s" in first["reason"]
    # The floor measured around this database's own re-syncs is the one taken when there is one.
    around = targets({**floors, "floor_parse_validate_hash_sqlite": figure(0.5),
                      "sync_first_sqlite": figure(12.5, machine_cpu_seconds={"median": 20.0})},
                     databases=["sqlite"], scaling=[], workers=[], cores=2)[0]
    assert "2.50 s), it takes 5.00x" in around["reason"] and "4.00x the floor" in around["reason"]
    # Not measured: nothing said of it.
    assert targets({**floors, "floor_parse_validate_hash": {"available": False}, "sync_first_sqlite": figure(12.5)},
                   databases=["sqlite"], scaling=[], workers=[])[0]["reason"] is None
