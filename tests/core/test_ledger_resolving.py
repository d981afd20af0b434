"""redeem_resolving: the counter's one-transaction redemption; the balance it saw never decides alone."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import select

from adapter import ledger
from adapter.models import IdempotencyRecord, LedgerEntry, Redemption
from tests import factories


def _redeem(db, child, shop, amount_cents, seen_balance_cents, key, **extra):  # type: ignore[no-untyped-def]
    def resolve(_session):  # type: ignore[no-untyped-def]
        return ledger.RedemptionRequest(merchant_id=shop.merchant_id, budget_id=child.budget_id, pass_id=child.pass_id,
                                        amount_cents=amount_cents, actor="test", idempotency_key=key,
                                        fingerprint=f"fp-{key}", **extra), seen_balance_cents
    return ledger.redeem_resolving(db, shop.merchant_id, key, f"fp-{key}", amount_cents, resolve)


@pytest.mark.parametrize(("seen", "amount", "partial", "expected"), [
    (2_500, 1_000, False, ("redeemed", 1_000, 1_500)),  # what it saw is what is there
    (9_999, 4_000, False, ("insufficient_balance", 0, 2_500)),  # saw more than is there now: refused, exactly
    (1_000, 4_000, True, ("redeemed", 2_500, 0)),  # saw less (a grant came since): takes what is there now
    (9_999, 4_000, True, ("redeemed", 2_500, 0)),  # saw more: still never below zero
])
def test_a_stale_balance_never_decides_the_outcome(db, vault, seen, amount, partial, expected):
    child = factories.child_with_budget(db, vault, amount_cents=2_500)
    shop = factories.merchant(db)
    outcome = _redeem(db, child, shop, amount, seen, "k-1", allow_partial=partial)
    assert (outcome.status, outcome.amount_cents, outcome.available_cents) == expected
    with db.read() as session:
        assert ledger.balance_of(session, child.budget_id) == expected[2]
        assert ledger.verify(session) == []


def test_a_refusal_while_resolving_leaves_no_record_and_a_replay_skips_resolving(db, vault):
    child = factories.child_with_budget(db, vault, amount_cents=2_500)
    shop = factories.merchant(db)

    def refuse(_session):  # type: ignore[no-untyped-def]
        raise LookupError("pass not usable")

    with pytest.raises(LookupError):
        ledger.redeem_resolving(db, shop.merchant_id, "k-2", "fp-k-2", 1_000, refuse)
    first = _redeem(db, child, shop, 1_000, 2_500, "k-2")  # the key is still free
    assert first.status == "redeemed" and not first.replayed
    replay = ledger.redeem_resolving(db, shop.merchant_id, "k-2", "fp-k-2", 1_000, refuse)  # never resolves
    assert replay.replayed and replay.redemption_id == first.redemption_id
    reused = ledger.redeem_resolving(db, shop.merchant_id, "k-2", "fp-other", 1_000, refuse)
    assert reused.status == "idempotency_key_reused"


@pytest.mark.parametrize(("seen", "amount", "partial"), [(2_500, 1_000, False), (2_500, 4_000, True)])
def test_the_stored_outcome_is_the_outcome_with_its_balance_and_a_replay_equals_it(db, vault, seen, amount, partial):
    # On PostgreSQL the balance is put into the stored outcome by the debit's own statement.
    child = factories.child_with_budget(db, vault, amount_cents=2_500)
    shop = factories.merchant(db)
    first = _redeem(db, child, shop, amount, seen, "k-3", allow_partial=partial)
    assert first.status == "redeemed" and not first.replayed
    with db.read() as session:
        stored = session.execute(select(IdempotencyRecord.outcome_json)
                                 .where(IdempotencyRecord.key == "k-3")).scalar_one()
        redemption = session.get(Redemption, first.redemption_id)
        entry = session.execute(select(LedgerEntry).where(LedgerEntry.redemption_id == first.redemption_id)).scalar_one()
    assert stored == ledger._outcome_json(first)
    assert (redemption.amount_cents, entry.amount_cents, entry.balance_after_cents) == (
        first.amount_cents, -first.amount_cents, first.available_cents)
    replay = _redeem(db, child, shop, amount, seen, "k-3", allow_partial=partial)
    assert replay.replayed and dataclasses.replace(replay, replayed=False) == first
