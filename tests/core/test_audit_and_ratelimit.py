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


def test_leased_limit_holds_across_processes_and_is_never_looser(db):
    from sqlalchemy import event

    from adapter.limits import DatabaseLimiter

    # Two limiters on one database stand for two workers (or hosts); each leases blocks of 5.
    workers = [DatabaseLimiter(db, clock=lambda: 1_000.0) for _ in range(2)]
    writes: list[str] = []
    event.listen(db.engine, "before_cursor_execute",
                 lambda _c, _cur, statement, *_rest: writes.append(statement) if "rate_counters" in statement else None)
    allowed = sum(workers[n % 2].hit_leased("merchant:1:balance", 100).allowed for n in range(300))
    # Unused leased hits are lost (stricter), never granted twice (looser): at most 2 x (5 - 1) lost.
    assert 100 - 2 * 4 <= allowed <= 100
    # One upsert per block, and once the shared counter is full each worker refuses without asking again.
    assert len(writes) <= 100 // 5 + 2
    writes.clear()
    assert not any(worker.hit_leased("merchant:1:balance", 100).allowed for worker in workers)
    assert writes == []
    # Another key and the next window start afresh.
    assert workers[0].hit_leased("merchant:2:balance", 100).allowed
    workers[1].clock = lambda: 1_020.0
    assert workers[1].hit_leased("merchant:1:balance", 100).allowed


def test_leased_limit_is_exact_for_small_limits(db):
    from adapter.limits import DatabaseLimiter

    workers = [DatabaseLimiter(db, clock=lambda: 1_000.0) for _ in range(3)]
    assert [workers[n % 3].hit_leased("merchant:1:balance", 7).allowed for n in range(9)] == [True] * 7 + [False] * 2
