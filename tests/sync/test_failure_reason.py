"""A failed sync's reason (stored on the run, shown on the dashboard, logged) quotes no record's values."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from adapter.db import Database
from adapter.sync import failure_reason

PASS_NUMBER = "6064366012345678"


def _driver_error(database_url: str) -> DBAPIError:
    """A real unique violation whose driver message quotes the duplicate value."""
    database = Database(database_url)
    try:
        with pytest.raises(DBAPIError) as caught, database.write() as session:
            session.execute(text("CREATE TEMPORARY TABLE leak_probe (pass_number text UNIQUE)"))
            session.execute(text("INSERT INTO leak_probe VALUES (:n), (:n)"), {"n": PASS_NUMBER})
        return caught.value
    finally:
        database.dispose()


def test_a_database_error_keeps_its_class_and_sqlstate_but_not_the_quoted_row(database_url):
    error = _driver_error(database_url)
    if database_url.startswith("postgresql"):
        assert PASS_NUMBER in str(error)  # the leak this guards against is real
    reason = failure_reason(error)
    assert PASS_NUMBER not in reason and PASS_NUMBER[-8:] not in reason
    assert reason.startswith("failed: the database refused the change (IntegrityError")
    if database_url.startswith("postgresql"):
        assert "SQLSTATE 23505" in reason and "constraint leak_probe_pass_number_key" in reason


def test_other_errors_keep_their_wording_with_numbers_masked():
    reason = failure_reason(RuntimeError(f"pass {PASS_NUMBER} and BSN 999993653 in a message"))
    assert reason == "failed: RuntimeError: pass ************5678 and BSN ********* in a message"
