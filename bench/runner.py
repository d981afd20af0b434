"""The bench run: data, floors, sync figures, SOAP, API; each figure beside its floor."""

from __future__ import annotations

import shutil
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from adapter.crypto import BLIND_INDEX_KEY_ENV, ENCRYPTION_KEYS_ENV, Vault, generate_blind_index_key, \
    generate_encryption_key
from adapter.demo_data import households_for_rows, write
from bench import api_bench, sync_bench
from bench.databases import database, postgres_database, postgres_reachable
from bench.measure import Figure, Run, env_with, failed, python_task, repeat, run_child, unavailable
from bench.soap_server import soap_service

REPO = Path(__file__).resolve().parent.parent
SOAP_PAGE_SIZE = 200  # households per page


@dataclass(frozen=True)
class BenchConfig:
    rows: int = 200_000
    scaling: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    soap_rows: int = 200_000
    runs: int = 3
    load_seconds: float = 10.0
    workers: tuple[int, ...] = (2, 4)
    databases: tuple[str, ...] = ("sqlite", "postgres")
    api_passes: int = 10_000
    postgres_server: str = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    parts: tuple[str, ...] = ("sync", "scaling", "soap", "api")
    seed: int = 1
    smoke: bool = False


@dataclass
class Bench:
    config: BenchConfig
    workdir: Path
    figures: dict[str, Figure] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.keys = {ENCRYPTION_KEYS_ENV: generate_encryption_key(), BLIND_INDEX_KEY_ENV: generate_blind_index_key()}
        self.vault = Vault([self.keys[ENCRYPTION_KEYS_ENV]], self.keys[BLIND_INDEX_KEY_ENV])
        self.sync_env = sync_bench.SyncEnvironment(self.workdir, self.keys)
        self.timeout = 3 * 3600.0
        self.postgres_problem = (postgres_reachable(self.config.postgres_server)
                                 if "postgres" in self.config.databases or "api" in self.config.parts else None)

    # -- bookkeeping --------------------------------------------------------------

    def measure(self, key: str, name: str, unit: str, produce: Callable[[], Figure]) -> Figure | None:
        try:
            figure = produce()
        except Exception as exc:  # noqa: BLE001 - one broken figure must not hide the others
            detail = "".join(traceback.format_exception_only(exc)).strip()
            figure = failed(name, unit, detail[-2000:])
        self.figures[key] = figure
        return figure

    def floor(self, key: str, name: str, argv: list[str]) -> None:
        self.measure(key, name, "s", lambda: repeat(name, "s", self.config.runs,
                                                    lambda: run_child(argv, timeout=self.timeout)))

    def export(self, rows: int, *, next_night: bool = False) -> Path:
        path = self.workdir / f"export-{rows}{'-next' if next_night else ''}.csv"
        if not path.exists():
            write("csv", path, households_for_rows(rows), seed=self.config.seed, next_night=next_night)
        return path

    @staticmethod
    def csv_rows(path: Path) -> int:
        with path.open("rb") as stream:
            return sum(1 for _ in stream) - 1

    def kinds(self) -> list[str]:
        return list(self.config.databases)

    def pg_unavailable(self, kind: str) -> str | None:
        return self.postgres_problem if kind == "postgres" else None

    # -- sync: floors and figures -------------------------------------------------

    def run_sync_part(self) -> None:
        tonight, next_night = self.export(self.config.rows), self.export(self.config.rows, next_night=True)
        rows = self.csv_rows(tonight)
        mapping = str(REPO / "mappings" / "demo-csv.yaml")
        self.floor("floor_csv_parse", f"raw csv parse, {rows} rows", python_task("bench.floors", "csv_parse",
                                                                                 str(tonight)))
        parse_floor = python_task("bench.floors", "parse_validate_hash", str(tonight), mapping)
        self.floor("floor_parse_validate_hash", f"parse + map + validate + row hash, {rows} rows", parse_floor)
        self.floor("floor_encrypt", f"one MultiFernet encryption per row, {rows} rows",
                   python_task("bench.floors", "encrypt", str(tonight)))
        sync_missing = sync_bench.sync_unavailable_reason()
        for kind in self.kinds():
            key = f"floor_bulk_load_{kind}"
            name = f"raw bulk load ({'executemany, one transaction' if kind == 'sqlite' else 'COPY'}), {kind}"
            if self.pg_unavailable(kind):
                self.figures[key] = unavailable(name, "s", self.pg_unavailable(kind), "postgres")
            else:
                self.measure(key, name, "s", lambda kind=kind, name=name: self._bulk_load(name, kind, tonight))
            self._sync_figures(kind, tonight, next_night, rows, sync_missing, parse_floor)

    def _first_sync_floor(self, kind: str, path: Path) -> tuple[float, float]:
        """The first sync's floor (csv parse + bulk load + one encryption per row) measured once, now: its seconds
        and the largest peak RSS of its three tasks."""
        runs = [self._bulk_load_once(kind, path)]
        runs += [run_child(python_task("bench.floors", task, str(path)), timeout=self.timeout)
                 for task in ("csv_parse", "encrypt")]
        return sum(run.seconds for run in runs), max(run.peak_rss_mb for run in runs)

    def _bulk_load(self, name: str, kind: str, path: Path) -> Figure:
        figure = Figure(name, "s")
        for _ in range(self.config.runs):
            figure.add_run(self._bulk_load_once(kind, path))
        return figure

    def _bulk_load_once(self, kind: str, path: Path) -> Run:
        with database(kind, self.workdir, self.config.postgres_server, migrated=False) as url:
            return run_child(python_task("bench.floors", "bulk_load", str(path), url), timeout=self.timeout)

    def _sync_figures(self, kind: str, tonight: Path, next_night: Path, rows: int, sync_missing: str | None,
                      floor_argv: list[str]) -> None:
        names = {"first": f"first full sync, {rows} rows, {kind}",
                 "resync": f"unchanged next-night re-sync, {rows} rows, {kind}",
                 "changed": f"1% changed night, {rows} rows, {kind}"}
        floor_name = f"parse + map + validate + row hash, {rows} rows, around each {kind} re-sync"
        first_floor_name = f"csv parse + bulk load + one encryption per row, {rows} rows, before each {kind} first sync"
        reason, requires = (sync_missing, "sync") if sync_missing else (self.pg_unavailable(kind), "postgres")
        if reason:
            for stage, name in names.items():
                self.figures[f"sync_{stage}_{kind}"] = unavailable(name, "s", reason, requires)
            self.figures[f"floor_parse_validate_hash_{kind}"] = unavailable(floor_name, "s", reason, requires)
            self.figures[f"floor_first_sync_{kind}"] = unavailable(first_floor_name, "s", reason, requires)
            return
        figures = {stage: Figure(name, "s") for stage, name in names.items()}
        # The re-sync's floor once more, just before and just after each re-sync, their mean paired with it: on
        # a shared machine the load moves within minutes (a floor measured only at the start of the bench made
        # the same code's ratio read 1.6x in one run and 2.2x in the next), and right after a first sync the
        # database server is still busy with what it just took in.
        paired_floor = Figure(floor_name, "s")
        # The first sync's floor likewise, just before each first sync (after one, PostgreSQL is still busy
        # with the rows it took in, which would slow the floor's load and flatter the ratio).
        first_floor = Figure(first_floor_name, "s")
        writes: dict[str, list[dict[str, int]]] = {"resync": [], "changed": []}
        try:
            for _ in range(self.config.runs):
                first_floor.add(*self._first_sync_floor(kind, tonight))
                # One fresh database per repetition: first sync, then the same file, then the changed night.
                with database(kind, self.workdir, self.config.postgres_server) as url:
                    tonight_config = self.sync_env.config(f"sync-{kind}", url, sync_bench.csv_source(tonight))
                    next_config = self.sync_env.config(f"sync-{kind}-next", url, sync_bench.csv_source(next_night))
                    run = self.sync_env.run_sync(tonight_config, url, self.timeout)
                    sync_bench.add_sync_run(figures["first"], run)
                    floor_before = run_child(floor_argv, timeout=self.timeout)
                    for stage, config in (("resync", tonight_config), ("changed", next_config)):
                        before = sync_bench.snapshot(url)
                        run = self.sync_env.run_sync(config, url, self.timeout)
                        sync_bench.add_sync_run(figures[stage], run)
                        writes[stage].append(sync_bench.rows_written_since(url, before))
                        if stage == "resync":
                            floor_after = run_child(floor_argv, timeout=self.timeout)
                            paired_floor.add((floor_before.seconds + floor_after.seconds) / 2,
                                             max(floor_before.peak_rss_mb, floor_after.peak_rss_mb))
        except Exception as exc:  # noqa: BLE001
            detail = "".join(traceback.format_exception_only(exc)).strip()[-2000:]
            for stage, name in names.items():
                self.figures[f"sync_{stage}_{kind}"] = failed(name, "s", detail)
            self.figures[f"floor_parse_validate_hash_{kind}"] = failed(floor_name, "s", detail)
            self.figures[f"floor_first_sync_{kind}"] = failed(first_floor_name, "s", detail)
            return
        self.figures[f"floor_first_sync_{kind}"] = first_floor
        for stage in ("resync", "changed"):
            figures[stage].details["rows_written"] = writes[stage]
        for stage, figure in figures.items():
            figure.details["rows"] = rows
            self.figures[f"sync_{stage}_{kind}"] = figure
        self.figures[f"floor_parse_validate_hash_{kind}"] = paired_floor

    # -- scaling --------------------------------------------------------------------

    def run_scaling_part(self) -> None:
        sync_missing = sync_bench.sync_unavailable_reason()
        for size in self.config.scaling:
            key, name = f"sync_scaling_{size}", f"first full sync, {size} rows (scaling), sqlite"
            if sync_missing:
                self.figures[key] = unavailable(name, "s", sync_missing, "sync")
                continue
            path = self.export(size)
            self.measure(key, name, "s", lambda path=path, name=name, size=size: self._scaling_figure(name, path, size))

    def _scaling_figure(self, name: str, path: Path, size: int) -> Figure:
        figure = Figure(name, "s", details={"rows": self.csv_rows(path), "asked_rows": size})
        for _ in range(self.config.runs):
            with database("sqlite", self.workdir, self.config.postgres_server) as url:
                config = self.sync_env.config(f"scaling-{size}", url, sync_bench.csv_source(path))
                run = self.sync_env.run_sync(config, url, self.timeout)
            sync_bench.add_sync_run(figure, run)
        return figure

    # -- SOAP -----------------------------------------------------------------------

    def run_soap_part(self) -> None:
        pages = self.workdir / "soap-pages"
        written = write("soap", pages, households_for_rows(self.config.soap_rows), seed=self.config.seed,
                        page_size=SOAP_PAGE_SIZE)
        sync_missing = sync_bench.sync_unavailable_reason()
        with soap_service(pages) as endpoint:
            self.floor("floor_zeep_parse", f"zeep's own parse of {written.files} SOAP pages ({written.rows} rows)",
                       python_task("bench.floors", "zeep_parse", endpoint, str(SOAP_PAGE_SIZE)))
            name = f"first sync through the SOAP connector, {written.rows} rows, sqlite"
            if sync_missing:
                self.figures["sync_soap"] = unavailable(name, "s", sync_missing, "sync")
                return
            self.measure("sync_soap", name, "s", lambda: self._soap_sync(name, endpoint, written.rows))

    def _soap_sync(self, name: str, endpoint: str, rows: int) -> Figure:
        figure = Figure(name, "s", details={"rows": rows})
        for _ in range(self.config.runs):
            with database("sqlite", self.workdir, self.config.postgres_server) as url:
                config = self.sync_env.config("soap", url, sync_bench.soap_source(endpoint, SOAP_PAGE_SIZE))
                run = self.sync_env.run_sync(config, url, self.timeout)
            sync_bench.add_sync_run(figure, run)
        return figure

    # -- API -------------------------------------------------------------------------

    API_FIGURES = ("floor_hello", "floor_select", "floor_write", "balance_checks", "redemptions",
                   "redemptions_one_budget")

    def run_api_part(self) -> None:
        wrk = api_bench.ensure_wrk()
        problem = self.postgres_problem or (None if wrk else "wrk is not installed and could not be installed "
                                            "(apt-get install wrk)")
        if problem:
            for workers in self.config.workers:
                for figure in self.API_FIGURES:
                    self.figures[f"api_{figure}_w{workers}"] = unavailable(
                        f"{figure} ({workers} workers)", "requests/s", problem, "postgres" if wrk else "wrk")
            return
        with postgres_database(self.config.postgres_server) as url:
            seeded = api_bench.seed(url, self.vault, self.config.api_passes)
            api_bench.prepare_floor_tables(url)
            floor_scripts = api_bench.floor_scripts(self.workdir, seeded)
            api_scripts = api_bench.api_scripts(self.workdir, seeded)
            config = self.sync_env.config("api", url, sync_bench.csv_source(self.workdir / "none.csv"))
            self._rate_limits_out_of_the_way(config)
            for workers in self.config.workers:
                self._api_floors(wrk, url, workers, floor_scripts)
                self._api_figures(wrk, url, workers, config, seeded, api_scripts)

    @staticmethod
    def _rate_limits_out_of_the_way(config: Path) -> None:
        import yaml

        settings = yaml.safe_load(config.read_text(encoding="utf-8"))
        settings["sources"] = {}
        # High enough that the limiter never answers 429 in the bench; it is still consulted per request.
        # Every limit the settings know, so a limit added later cannot quietly dominate the figures.
        from adapter.settings import RateLimitSettings

        settings["api"] = {"rate_limits": {name: 100_000_000 for name in RateLimitSettings.model_fields}}
        config.write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")

    def _load(self, key: str, name: str, wrk: str, base_url: str, script: Path, workers: int) -> None:
        self.measure(key, name, "requests/s", lambda: api_bench.load_figure(
            name, wrk, base_url, script, runs=self.config.runs, seconds=self.config.load_seconds,
            connections=2 * workers))

    def _api_floors(self, wrk: str, url: str, workers: int, scripts: dict[str, Path]) -> None:
        port = api_bench.free_port()
        argv = api_bench.gunicorn_argv(workers, port, "bench.floor_app:create_app()")
        env = env_with(**{"BENCH_FLOOR_DATABASE_URL": url})
        try:
            with api_bench.serving(argv, env, port, "/floor/hello", self.workdir / f"floor-{workers}.log") as base:
                for floor, label in (("hello", "hello-world JSON"), ("select", "one primary-key SELECT"),
                                     ("write", "conditional UPDATE + INSERT")):
                    self._load(f"api_floor_{floor}_w{workers}", f"floor: {label} ({workers} workers)", wrk, base,
                               scripts[floor], workers)
        except api_bench.LoadFailed as exc:
            for floor in ("hello", "select", "write"):
                self.figures.setdefault(f"api_floor_{floor}_w{workers}",
                                        failed(f"floor {floor} ({workers} workers)", "requests/s", str(exc)))

    def _api_figures(self, wrk: str, url: str, workers: int, config: Path, seeded: api_bench.Seeded,
                     scripts: dict[str, Path]) -> None:
        port = api_bench.free_port()
        env = env_with(ADAPTER_DATABASE_URL=url, ADAPTER_CONFIG=str(config), **self.keys)
        labels = {"balance_checks": "POST /v1/balance-checks", "redemptions": "POST /v1/redemptions, many budgets",
                  "redemptions_one_budget": "POST /v1/redemptions, one budget"}
        try:
            with api_bench.serving(api_bench.api_server_argv(config, workers, port), env, port, "/v1/health",
                                   self.workdir / f"api-{workers}.log") as base:
                reasons = api_bench.api_unavailable_reason(base, seeded)
                for figure, label in labels.items():
                    key, name = f"api_{figure}_w{workers}", f"{label} ({workers} workers)"
                    if reasons[figure]:
                        self.figures[key] = unavailable(name, "requests/s", reasons[figure], "api")
                    else:
                        self._load(key, name, wrk, base, scripts[figure], workers)
        except api_bench.LoadFailed as exc:
            for figure, label in labels.items():
                self.figures.setdefault(f"api_{figure}_w{workers}",
                                        failed(f"{label} ({workers} workers)", "requests/s", str(exc)))

    # -- all ------------------------------------------------------------------------

    def run(self) -> None:
        parts = {"sync": self.run_sync_part, "scaling": self.run_scaling_part, "soap": self.run_soap_part,
                 "api": self.run_api_part}
        for part in self.config.parts:
            try:
                parts[part]()
            except Exception as exc:  # noqa: BLE001
                detail = "".join(traceback.format_exception_only(exc)).strip()[-2000:]
                self.figures[f"part_{part}"] = failed(f"the {part} part", "s", detail)

    def cleanup(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)
