from __future__ import annotations

from adapter import migrate
from adapter.api import create_app
from adapter.db import Database
from tests.conftest import make_settings


def test_health_and_ready(tmp_path, database_url):
    app = create_app(settings=make_settings(tmp_path, database_url))
    client = app.test_client()
    health = client.get("/v1/health")
    assert health.status_code == 200 and health.headers["API-Version"]
    assert client.get("/v1/ready").get_json() == {"status": "ready"}


def test_ready_says_to_migrate_when_schema_is_behind(tmp_path):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    client = create_app(settings=make_settings(tmp_path, url)).test_client()
    response = client.get("/v1/ready")
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["code"] == "migrations_pending"
    assert response.headers["Retry-After"] == "30"  # as the OpenAPI document gives every 503
    migrate.upgrade(Database(url))
    assert client.get("/v1/ready").status_code == 200


def test_unknown_address_is_a_problem_document(tmp_path, sqlite_url):
    client = create_app(settings=make_settings(tmp_path, sqlite_url)).test_client()
    response = client.get("/v1/nothing-here")
    body = response.get_json()
    assert response.status_code == 404 and body["code"] == "not_found" and body["status"] == 404


def test_a_request_while_the_database_is_down_is_a_503_that_says_to_retry_with_the_same_key(tmp_path, vault):
    from tests.api.conftest import build_api
    from tests.api.live_server import free_port

    # Nothing listens there: as during a PostgreSQL restart or failover.
    down = build_api(tmp_path, f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none", vault)
    answer = down.client.post("/v1/redemptions", json={"pass_number": "6400000000000011", "amount_cents": 100,
                                                       "category": "school"},
                              headers={"Authorization": "Bearer spk_any", "Idempotency-Key": "till-1-bon-9"})
    assert answer.status_code == 503 and answer.get_json()["code"] == "database_unavailable"
    assert "dezelfde Idempotency-Key" in answer.get_json()["detail"] and answer.headers["Retry-After"]


def test_ready_on_an_older_host_says_to_install_the_newer_version_not_to_migrate(tmp_path, sqlite_url):
    from sqlalchemy import text

    database = Database(sqlite_url)
    with database.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0099'"))  # a later version migrated it
    database.dispose()
    response = create_app(settings=make_settings(tmp_path, sqlite_url)).test_client().get("/v1/ready")
    assert response.status_code == 503 and response.get_json()["code"] == "migrations_pending"
    assert "nieuwer" in response.get_json()["detail"] and "db upgrade" not in response.get_json()["detail"]


def test_ready_says_when_this_servers_keys_open_none_of_the_stored_cardholders(tmp_path, database_url, vault):
    """A host started with another installation's keys answered ready, then a 500 to every balance check the load
    balancer sent it. One unreadable row among readable ones is that row's matter, not the whole service's."""
    from adapter.crypto import Vault, generate_blind_index_key, generate_encryption_key
    from tests import factories

    client = create_app(settings=make_settings(tmp_path, database_url)).test_client()
    db = Database(database_url)
    try:
        assert client.get("/v1/ready").status_code == 200  # nothing stored yet: nothing to open
        elsewhere = Vault([generate_encryption_key()], generate_blind_index_key())  # another installation's
        factories.child_with_budget(db, elsewhere)
        response = client.get("/v1/ready")
        assert response.status_code == 503 and response.headers["Retry-After"] == "30"
        body = response.get_json()
        assert body["code"] == "keys_unusable" and "ADAPTER_ENCRYPTION_KEYS" in body["detail"]
        assert "keys check" in body["detail"]
        factories.child_with_budget(db, vault, bsn=factories.TEST_BSNS[1])
        assert client.get("/v1/ready").status_code == 200
    finally:
        db.dispose()


def test_ready_says_the_database_is_unavailable_when_the_keys_check_cannot_read_it(tmp_path, sqlite_url, monkeypatch):
    """A database lost during the keys' look-up is `database_unavailable`, as when it is lost before."""
    from sqlalchemy.exc import OperationalError

    import adapter.api.health

    def lost(*_args):
        raise OperationalError("SELECT", {}, Exception("server closed the connection unexpectedly"))

    monkeypatch.setattr(adapter.api.health, "keys_open_none", lost)
    response = create_app(settings=make_settings(tmp_path, sqlite_url)).test_client().get("/v1/ready")
    assert response.status_code == 503 and response.get_json()["code"] == "database_unavailable"
