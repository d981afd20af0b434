from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from adapter import audit, ratelimit


def test_audit_chain_verifies_and_refuses_edits(db):
    with db.write() as session:
        audit.record(session, "operator:test", "merchant.created", "merchant:1", categories="school")
        audit.record(session, "operator:test", "merchant.key_rotated", "merchant:1")
    with db.read() as session:
        assert audit.verify(session) == []
    with pytest.raises(DBAPIError, match="append-only"), db.write() as session:
        session.execute(text("UPDATE audit_entries SET actor = 'someone-else'"))


def test_rate_limit_counts_per_bucket_and_window(db):
    verdicts = [ratelimit.hit(db, "merchant:1:balance", limit=3, now=1_000.0) for _ in range(4)]
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert verdicts[-1].retry_after_seconds == 20  # window 960..1020
    assert ratelimit.hit(db, "merchant:2:balance", limit=3, now=1_000.0).allowed
    assert ratelimit.hit(db, "merchant:1:balance", limit=3, now=1_020.0).hits == 1


def test_concurrent_appends_keep_one_chain(db):
    from concurrent.futures import ThreadPoolExecutor

    def append(number: int) -> None:
        with db.write() as session:
            audit.record(session, "operator:test", "merchant.created", f"merchant:{number}")

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(append, range(40)))
    with db.read() as session:
        assert audit.verify(session) == []
        assert session.query(audit.AuditEntry).count() == 40
