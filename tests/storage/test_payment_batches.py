"""Concurrent payments coalesced into batches (PostgreSQL kb_receive_batch, migration 0017; SQLite group commit):
one event that raises fails alone, its batch-mates are applied, and the bad one leaves no trace."""

from __future__ import annotations

import asyncio

from storage.records import OrderState, PaymentOutcome
from tests.storage.seed import NOW, make_shop, new_order, payment

#: -fee overflows a 64-bit integer when the fee's ledger line is written: an error inside the apply itself
BAD_FEE = -(2**63)


async def test_one_failing_payment_does_not_fail_its_batch_mates(store):
    shop = await make_shop(store, codes=20)
    orders = [await store.reserve(new_order(shop.sku, user=f"b{i}"), NOW) for i in range(12)]
    events = [payment(o.ref, 1000, txn=f"tx-{i}", fee=BAD_FEE if i == 5 else 3) for i, o in enumerate(orders)]
    results = await asyncio.gather(*(store.receive_payment(e, NOW) for e in events), return_exceptions=True)
    assert isinstance(results[5], Exception)
    good = [r for i, r in enumerate(results) if i != 5]
    assert [r.outcome for r in good] == [PaymentOutcome.ALLOCATED] * 11  # type: ignore[union-attr]
    assert len({r.event_id for r in good}) == 11  # type: ignore[union-attr]
    assert await store.pending_outbox() == 11
    bad = await store.order_by_id(orders[5].id)
    assert bad is not None
    assert bad.state == OrderState.RESERVED
    assert await store.order_items(orders[5].id) == []
    assert await store.order_payment(orders[5].id) is None
    # fixed notification, same transaction id: applied once, a repeat finds its first outcome
    fixed = await store.receive_payment(payment(orders[5].ref, 1000, txn="tx-5"), NOW)
    again = await asyncio.gather(*(store.receive_payment(payment(orders[5].ref, 1000, txn="tx-5"), NOW)
                                   for _ in range(3)))
    assert fixed.outcome == PaymentOutcome.ALLOCATED
    assert {(r.outcome, r.event_id) for r in again} == {(PaymentOutcome.ALREADY_APPLIED, fixed.event_id)}
    assert len(await store.order_items(orders[5].id)) == 1
    assert await store.pending_outbox() == 12


async def test_a_large_burst_is_applied_exactly_once(store):
    """More concurrent callers than one batch holds (32): several batches, some in flight together."""
    shop = await make_shop(store, codes=120)
    orders = [await store.reserve(new_order(shop.sku, user=f"l{i}"), NOW) for i in range(100)]
    events = [payment(o.ref, 1000, txn=f"tx-{i}") for i, o in enumerate(orders)]
    results = await asyncio.gather(*(store.receive_payment(e, NOW) for e in events + events[:20]))
    assert [r.outcome for r in results[20:100]] == [PaymentOutcome.ALLOCATED] * 80
    for first, repeat in zip(results[:20], results[100:], strict=True):  # either copy may come first
        assert {first.outcome, repeat.outcome} == {PaymentOutcome.ALLOCATED, PaymentOutcome.ALREADY_APPLIED}
        assert first.event_id == repeat.event_id
    allocated = [r for r in results if r.outcome == PaymentOutcome.ALLOCATED]
    assert sorted(r.order_id for r in allocated) == sorted(o.id for o in orders)
    assert await store.pending_outbox() == 100
    assert await store.pool_available(shop.pool.id) == 20
    uses = {(i.code.id, i.use_no) for o in orders for i in await store.order_items(o.id)}
    assert len(uses) == 100
