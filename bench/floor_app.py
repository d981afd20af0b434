"""The API floors: the least a request can cost in this stack (Flask + SQLAlchemy + PostgreSQL, gunicorn).

Served with the same gunicorn settings as ``stadspas-adapter serve``, and with the service's own pool
policy (a pooled connection pinged only after sitting idle, ``adapter.db.ping_when_idle``); the SELECT
runs outside a transaction, as the service's single-statement reads do:
* POST /floor/hello   - JSON in, JSON out, no database;
* POST /floor/select  - one primary-key SELECT of a budget;
* POST /floor/write   - one transaction: a conditional UPDATE and one INSERT
                        (the shape of a redemption's debit and its record).
Bench-only: never part of the service.
"""

from __future__ import annotations

import os

from flask import Flask, jsonify, request
from sqlalchemy import create_engine, text

from adapter.db import ping_when_idle

DATABASE_ENV = "BENCH_FLOOR_DATABASE_URL"

# Created by the bench before the floors run (see bench.api_bench.prepare_floor_tables).
FLOOR_TABLES = (
    "CREATE TABLE IF NOT EXISTS bench_floor_budgets (id BIGINT PRIMARY KEY, balance_cents BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS bench_floor_writes (id BIGSERIAL PRIMARY KEY, budget_id BIGINT NOT NULL, "
    "idempotency_key VARCHAR(128) NOT NULL UNIQUE, amount_cents BIGINT NOT NULL, "
    "created_at TIMESTAMPTZ NOT NULL DEFAULT now())",
)


def create_app() -> Flask:
    app = Flask(__name__)
    engine = create_engine(os.environ[DATABASE_ENV], pool_size=5, max_overflow=5)
    ping_when_idle(engine)
    reads = engine.execution_options(isolation_level="AUTOCOMMIT")

    @app.post("/floor/hello")
    def hello():  # type: ignore[no-untyped-def]
        body = request.get_json()
        return jsonify({"hello": "world", "echo": body.get("pass_number")})

    @app.post("/floor/select")
    def select_one():  # type: ignore[no-untyped-def]
        budget_id = int(request.get_json()["budget_id"])
        with reads.connect() as connection:
            row = connection.execute(text("SELECT id, balance_cents FROM budgets WHERE id = :id"),
                                     {"id": budget_id}).one_or_none()
        if row is None:
            return jsonify({"error": "not found"}), 404
        return jsonify({"budget_id": row.id, "available_cents": row.balance_cents})

    @app.post("/floor/write")
    def write_one():  # type: ignore[no-untyped-def]
        body = request.get_json()
        budget_id, amount = int(body["budget_id"]), int(body["amount_cents"])
        with engine.begin() as connection:
            updated = connection.execute(text(
                "UPDATE bench_floor_budgets SET balance_cents = balance_cents - :amount "
                "WHERE id = :id AND balance_cents >= :amount"), {"id": budget_id, "amount": amount}).rowcount
            if updated != 1:
                return jsonify({"error": "insufficient"}), 409
            connection.execute(text(
                "INSERT INTO bench_floor_writes (budget_id, idempotency_key, amount_cents) VALUES (:id, :key, :amount)"),
                {"id": budget_id, "key": request.headers["Idempotency-Key"], "amount": amount})
        return jsonify({"budget_id": budget_id, "amount_cents": amount}), 201

    return app
