"""API figures and floors under gunicorn on PostgreSQL, loaded by wrk from a separate process.

Floors (bench/floor_app.py): hello-world JSON, one primary-key SELECT, one
conditional UPDATE + INSERT. Figures: POST /v1/balance-checks and
POST /v1/redemptions spread over many passes (distinct Idempotency-Keys), and
redemptions contending on one budget. Same gunicorn settings, same database.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from sqlalchemy import create_engine, text

from adapter import ledger, merchants
from adapter.crypto import Vault
from adapter.db import Database
from adapter.models import Budget, Cardholder, Household, Pass, PassState
from adapter.personal import PersonalFields, seal
from bench.floor_app import DATABASE_ENV, FLOOR_TABLES
from bench.measure import Figure
from bench.wrk_script import write_script

BUDGET_CATEGORY = "school"
# A redemption takes 1 cent; the grants are large enough that no load drains them.
GRANT_CENTS = 50_000_000
CONTENDED_GRANT_CENTS = 500_000_000


class LoadFailed(RuntimeError):
    pass


def ensure_wrk() -> str | None:
    """The wrk binary; installed from the Debian package when missing and we may. None if impossible."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], env=env, check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return shutil.which("wrk")


@dataclass(frozen=True)
class Seeded:
    api_key: str
    pass_numbers: list[str]
    budget_ids: list[int]
    contended_pass_number: str


def seed(database_url: str, vault: Vault, passes: int) -> Seeded:
    """``passes`` children with an active pass and one open, funded budget each, plus one merchant."""
    today = date.today()
    period_start, period_end = today - timedelta(days=30), today + timedelta(days=365)
    database = Database(database_url)
    pass_numbers: list[str] = []
    budget_ids: list[int] = []
    try:
        with database.write() as session:
            merchant_key = merchants.add_merchant(session, "Benchwinkel", ["*"]).api_key
        for start in range(0, passes + 1, 1000):
            with database.write() as session:
                for index in range(start, min(start + 1000, passes + 1)):
                    household = Household(source="bench", source_key=f"H{index}")
                    session.add(household)
                    session.flush()
                    holder = Cardholder(household_id=household.id, source="bench", source_key=f"P{index}",
                                        personal_encrypted=seal(vault, PersonalFields(
                                            first_names="Zoë", birth_date=date(2015, 6, 1))), is_child=True)
                    session.add(holder)
                    session.flush()
                    number = f"70643660{index:08d}"
                    session.add(Pass(cardholder_id=holder.id, pass_number=number, status=PassState.ACTIVE,
                                     valid_from=period_start, valid_until=period_end))
                    budget = Budget(cardholder_id=holder.id, rule_code="bench", rule_name="Bench",
                                    category=BUDGET_CATEGORY, period_key="bench", period_start=period_start,
                                    period_end=period_end)
                    session.add(budget)
                    session.flush()
                    contended = index == passes
                    ledger.grant(session, budget.id, CONTENDED_GRANT_CENTS if contended else GRANT_CENTS, "bench")
                    if not contended:
                        pass_numbers.append(number)
                        budget_ids.append(budget.id)
        return Seeded(merchant_key, pass_numbers, budget_ids, f"70643660{passes:08d}")
    finally:
        database.dispose()


def prepare_floor_tables(database_url: str) -> None:
    engine = create_engine(database_url)
    with engine.begin() as connection:
        for statement in FLOOR_TABLES:
            connection.execute(text(statement))
        connection.execute(text("INSERT INTO bench_floor_budgets (id, balance_cents) "
                                "SELECT id, balance_cents FROM budgets"))
    engine.dispose()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def serving(argv: list[str], env: dict[str, str], port: int, ready_path: str, log: Path) -> Iterator[str]:
    """Start a server (its own process group), wait until ``ready_path`` answers, stop it after."""
    with log.open("w") as log_stream:
        process = subprocess.Popen(argv, env=env, stdout=log_stream, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise LoadFailed(f"the server exited ({process.returncode}); see {log}:\n"
                                 + "\n".join(log.read_text().splitlines()[-10:]))
            try:
                method = "POST" if ready_path.startswith("/floor") else "GET"
                data = b"{}" if method == "POST" else None
                urllib.request.urlopen(urllib.request.Request(
                    base_url + ready_path, data=data, method=method,
                    headers={"Content-Type": "application/json"}), timeout=2)
                break
            except urllib.error.HTTPError:
                break  # it answers
            except OSError:
                if time.monotonic() > deadline:
                    raise LoadFailed(f"the server did not answer within 60 s; see {log}") from None
                time.sleep(0.2)
        yield base_url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def post_json(base_url: str, path: str, body: dict, headers: dict[str, str]) -> tuple[int, dict]:
    request = urllib.request.Request(base_url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        payload = error.read()
        try:
            return error.code, json.loads(payload or b"{}")
        except ValueError:
            return error.code, {}


def run_wrk(wrk: str, base_url: str, script: Path, *, seconds: float, connections: int) -> dict:
    threads = min(2, connections)
    result = subprocess.run(
        [wrk, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
         "-s", str(script), base_url, "--", uuid.uuid4().hex[:12]], capture_output=True, text=True,
        timeout=seconds + 60)
    for line in result.stdout.splitlines():
        if line.startswith("BENCH-WRK "):
            outcome = json.loads(line[len("BENCH-WRK "):])
            if outcome["requests"] == 0:
                raise LoadFailed(f"wrk made no requests against {base_url}: {result.stderr.strip()}")
            return outcome
    raise LoadFailed(f"wrk gave no result (exit {result.returncode}): {result.stderr.strip()[-500:]}")


def load_figure(name: str, wrk: str, base_url: str, script: Path, *, runs: int, seconds: float,
                connections: int) -> Figure:
    """Requests/s as the figure; p50/p99 latency (ms) and error counts per run beside it."""
    figure = Figure(name, "requests/s")
    p50, p99, errors = [], [], []
    for _ in range(runs):
        outcome = run_wrk(wrk, base_url, script, seconds=seconds, connections=connections)
        figure.add(outcome["requests"] / (outcome["duration_us"] / 1e6))
        p50.append(outcome["p50_us"] / 1000)
        p99.append(outcome["p99_us"] / 1000)
        errors.append(outcome["status_errors"] + outcome["socket_errors"])
    figure.details.update({
        "p50_ms": {"median": _median(p50), "min": min(p50), "max": max(p50)},
        "p99_ms": {"median": _median(p99), "min": min(p99), "max": max(p99)},
        "errors": errors, "connections": connections,
    })
    if any(errors):
        figure.details["note"] = "some requests failed (non-2xx or socket errors): see errors"
    return figure


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def floor_scripts(folder: Path, seeded: Seeded) -> dict[str, Path]:
    budget_ids = [str(budget_id) for budget_id in seeded.budget_ids]
    content = {"Content-Type": "application/json"}
    return {
        "hello": write_script(folder, "floor-hello", "/floor/hello", '{"pass_number":"{value}"}',
                              seeded.pass_numbers, content),
        "select": write_script(folder, "floor-select", "/floor/select", '{"budget_id":{value}}', budget_ids, content),
        "write": write_script(folder, "floor-write", "/floor/write", '{"budget_id":{value},"amount_cents":1}',
                              budget_ids, content),
    }


def api_scripts(folder: Path, seeded: Seeded) -> dict[str, Path]:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {seeded.api_key}"}
    redemption = '{"pass_number":"{value}","amount_cents":1,"category":"' + BUDGET_CATEGORY + '"}'
    return {
        "balance_checks": write_script(folder, "balance-checks", "/v1/balance-checks", '{"pass_number":"{value}"}',
                                       seeded.pass_numbers, headers),
        "redemptions": write_script(folder, "redemptions", "/v1/redemptions", redemption,
                                    seeded.pass_numbers, headers),
        "redemptions_one_budget": write_script(folder, "redemptions-one-budget", "/v1/redemptions", redemption,
                                               [seeded.contended_pass_number], headers),
    }


def api_unavailable_reason(base_url: str, seeded: Seeded) -> dict[str, str | None]:
    """Per endpoint: None when it answers a valid request with 2xx, a reason when the route is absent.

    Any other answer is an error, not "not available": a broken endpoint must fail the bench.
    """
    headers = {"Authorization": f"Bearer {seeded.api_key}"}
    reasons: dict[str, str | None] = {}
    probes = {
        "balance_checks": ("/v1/balance-checks", {"pass_number": seeded.pass_numbers[0]}),
        "redemptions": ("/v1/redemptions", {"pass_number": seeded.pass_numbers[0], "amount_cents": 1,
                                            "category": BUDGET_CATEGORY}),
    }
    for name, (path, body) in probes.items():
        status, answer = post_json(base_url, path, body, {**headers, "Idempotency-Key": f"bench-probe-{name}"})
        if status in (404, 405):
            reasons[name] = f"POST {path} answers {status} in this checkout (the counter API is not merged yet)"
        elif 200 <= status < 300:
            reasons[name] = None
        else:
            raise LoadFailed(f"POST {path} answered {status} to a valid bench request: {answer}")
    reasons["redemptions_one_budget"] = reasons["redemptions"]
    return reasons


def gunicorn_argv(workers: int, port: int, app: str) -> list[str]:
    """The same settings as adapter.api.server.serve: sync workers, 30 s timeout, no access log."""
    return [str(Path(sys.executable).with_name("gunicorn")), "--workers", str(workers), "--worker-class", "sync",
            "--bind", f"127.0.0.1:{port}", "--timeout", "30", "--graceful-timeout", "10", app]


def api_server_argv(config: Path, workers: int, port: int) -> list[str]:
    return [str(Path(sys.executable).with_name("stadspas-adapter")), "--config", str(config), "serve",
            "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
