"""Sync figures: `stadspas-adapter sync SOURCE` as a user runs it, in a child process per run.

The engine is used only through its public command, so the bench measures what a
municipality's scheduler runs. Where this checkout has no sync command yet the
figures say "not available" instead of failing.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import func, select

from adapter.db import Database
from adapter.models import Budget, Cardholder, Household, LedgerEntry, Pass
from bench.measure import Figure, Run, command_task, env_with, run_child

REPO = Path(__file__).resolve().parent.parent
SOURCE_NAME = "bench"


def sync_unavailable_reason() -> str | None:
    """None when this checkout has the sync engine and its command; else what is missing."""
    try:
        import adapter.sync  # noqa: F401
    except ImportError:
        return "adapter.sync is not in this checkout (the sync engine is not merged yet)"
    from adapter.cli import cli

    if "sync" not in cli.commands:
        return "the CLI has no 'sync' command in this checkout"
    return None


@dataclass(frozen=True)
class SyncEnvironment:
    """Keys and paths every sync child shares (keys generated for this run only)."""

    folder: Path
    keys: dict[str, str]

    def config(self, name: str, database_url: str, source: dict[str, Any]) -> Path:
        """A configuration file for one source; the database URL goes in the environment (run_sync)."""
        path = self.folder / f"{name}.yaml"
        path.write_text(yaml.safe_dump({
            "environment": "development",
            "data_dir": str(self.folder / "var"),
            "budgets": str(REPO / "config" / "budgets.yaml"),
            # The bench's changed night is deliberate: never let a guard refuse it.
            "sync": {"max_change_share": 1.0, "min_row_share": 0.0},
            "sources": {SOURCE_NAME: source},
        }, sort_keys=False), encoding="utf-8")
        return path

    def run_sync(self, config: Path, database_url: str, timeout: float) -> Run:
        env = env_with(ADAPTER_DATABASE_URL=database_url, **self.keys)
        argv = command_task(str(Path(sys.executable).with_name("stadspas-adapter")), "--config", str(config),
                            "sync", SOURCE_NAME)
        return run_child(argv, env=env, cwd=self.folder, timeout=timeout)


# "... succeeded in 10.4s (starting 0.01s, reading 4.21s, planning 0.55s, ...); read ...": the sync's summary.
_STAGES_SAID = re.compile(r" in [0-9.]+s \(([^)]*)\); read ")


def stages_said(summary: str | None) -> dict[str, float] | None:
    """The seconds each stage of a sync took, as its summary line gives them; None when it gives none (a
    checkout from before the sync said so)."""
    found = _STAGES_SAID.search(summary or "")
    if found is None:
        return None
    stages = {}
    for said in found.group(1).split(", "):
        name, _, seconds = said.rpartition(" ")
        stages[name] = float(seconds.rstrip("s"))
    return stages


def add_sync_run(figure: Figure, run: Run) -> None:
    """One run of a sync for ``figure``: its time, peak RSS and CPU, the sync's last line (``sync_said``), and
    the stage times that line gives, when it gives them."""
    figure.add_run(run)
    said = run.reported.get("output_tail")
    figure.details["sync_said"] = said
    stages = stages_said(said)
    if stages is not None:
        figure.details.setdefault("stages", []).append(stages)


def csv_source(path: Path) -> dict[str, Any]:
    return {"connector": "csv", "mapping": str(REPO / "mappings" / "demo-csv.yaml"),
            "options": {"path": str(path), "encoding": "cp1252"}}


def soap_source(endpoint: str, page_size: int) -> dict[str, Any]:
    return {"connector": "soap", "mapping": str(REPO / "mappings" / "demo-soap.yaml"), "options": {
        "wsdl": str(REPO / "connectors" / "wsdl" / "stadspas-v1.wsdl"), "operation": "zoekPashouders",
        "endpoint": endpoint, "arguments": {"gemeentecode": "0599"}, "records_path": "huishouden",
        "paging": {"style": "continuation", "page_size": page_size}, "operation_timeout": 300, "retries": 0}}


@dataclass(frozen=True)
class Snapshot:
    taken_at: datetime
    counts: dict[str, int]


def snapshot(database_url: str) -> Snapshot:
    taken_at = datetime.now(timezone.utc)
    database = Database(database_url)
    try:
        with database.read() as session:
            counts = {model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0
                      for model in (Household, Cardholder, Pass, Budget, LedgerEntry)}
    finally:
        database.dispose()
    return Snapshot(taken_at, counts)


def rows_written_since(database_url: str, before: Snapshot) -> dict[str, int]:
    """Rows inserted or updated since ``before``: updated_at for the people tables, counts for money."""
    after = snapshot(database_url)
    database = Database(database_url)
    try:
        with database.read() as session:
            touched = {model.__tablename__: session.scalar(
                select(func.count()).select_from(model).where(model.updated_at >= before.taken_at)) or 0
                for model in (Household, Cardholder, Pass)}
    finally:
        database.dispose()
    for table in ("budgets", "ledger_entries"):
        touched[table] = after.counts[table] - before.counts[table]
    return touched
