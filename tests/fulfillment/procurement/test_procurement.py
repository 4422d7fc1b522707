"""Procurement exactly once, on SQLite and PostgreSQL, against the fake suppliers and their faults.

After each scenario the proofs are read by SQL: one supplier order per procurement at most, the codes the fake
issued are in the vault exactly once, and the procurement's final state matches what the supplier did."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from datetime import timedelta

import httpx
import pytest

from storage.records_supply import ProcurementState
from tests.fulfillment.procurement.conftest import CARD_PRICE, Bench


async def _settled(bench: Bench, ref: str, rounds: int = 100) -> ProcurementState:
    """Resolve (query job) until the procurement is final."""
    for _ in range(rounds):
        p = await bench.store.procurement_by_ref(ref)
        if p.state in (ProcurementState.SUCCEEDED, ProcurementState.FAILED):
            return p.state
        await bench.service.resolve_due()
        await asyncio.sleep(0.05)
    return (await bench.store.procurement_by_ref(ref)).state


async def _buy(bench: Bench, quantity: int = 3, supplier: str = "kw", product: str = "41847",
               max_cost: int = CARD_PRICE):
    return await bench.service.buy(supplier, product, quantity, max_cost, "CNY", bench.pool.id)


async def _vault_holds_exactly(bench: Bench, issued: list[str]) -> None:
    rows = await bench.sql(f"SELECT id, digest, key_id, nonce, ciphertext FROM codes WHERE pool_id = {bench.pool.id}")
    from storage.records import EncryptedCode

    opened = sorted(bench.vault.open(EncryptedCode(r[0], bytes(r[1]), r[2], bytes(r[3]), bytes(r[4]))) for r in rows)
    assert opened == sorted(issued)


async def test_a_purchase_puts_the_codes_in_the_vault_as_a_batch_with_its_cost(bench):
    p = await _buy(bench)
    assert p.state is ProcurementState.SUCCEEDED
    assert (p.received, p.duplicates, p.shortfall, p.cost) == (3, 0, 0, 3 * CARD_PRICE)
    assert await bench.available() == 3
    await _vault_holds_exactly(bench, bench.kashangwl.issued_codes)
    batch = await bench.sql(f"SELECT supplier, unit_cost, imported FROM code_batches WHERE id = {p.batch_id}")
    assert batch == [("kw", CARD_PRICE, 3)]
    assert len(bench.kashangwl.orders) == 1
    assert bench.kashangwl.orders[p.supplier_order_id].outer_order_id == p.our_ref


@pytest.mark.parametrize("fault", ["hold_after_accept", "http_500_after_accept", "reset_after_accept",
                                   "html_after_accept", "truncated_after_accept", "server_error_after_accept",
                                   "missing_fields_after_accept"])
async def test_a_lost_answer_is_unknown_then_resolved_without_buying_twice(bench, fault):
    setattr(bench.kashangwl.faults, fault, 1)
    p = await _buy(bench)
    assert p.state in (ProcurementState.UNKNOWN, ProcurementState.SUCCEEDED)  # the callback may win the race
    assert await _settled(bench, p.our_ref) is ProcurementState.SUCCEEDED
    await bench.kashangwl.drain()
    assert len(bench.kashangwl.orders) == 1
    assert bench.kashangwl.buy_requests == 1
    await _vault_holds_exactly(bench, bench.kashangwl.issued_codes)
    assert await bench.available() == 3


async def test_unknown_then_success_and_unknown_then_failed(bench):
    bench.kashangwl.faults.unknown_then_success = 1
    ok = await _buy(bench)
    assert ok.state is ProcurementState.UNKNOWN
    assert await _settled(bench, ok.our_ref) is ProcurementState.SUCCEEDED
    bench.kashangwl.faults.unknown_then_failed = 1
    balance = bench.kashangwl.balance
    bad = await _buy(bench)
    assert bad.state is ProcurementState.UNKNOWN
    assert await _settled(bench, bad.our_ref) is ProcurementState.FAILED
    await bench.kashangwl.drain()
    assert bench.kashangwl.balance == balance  # the supplier refunded the failed order
    assert await bench.available() == 3


async def test_callbacks_before_the_response_and_twice_settle_once(bench):
    bench.kashangwl.faults.callback_before_response = 1
    first = await _buy(bench)
    bench.kashangwl.faults.duplicate_callbacks = 1
    second = await _buy(bench)
    await bench.kashangwl.drain()
    for p in (first, second):
        assert (await bench.store.procurement_by_ref(p.our_ref)).state is ProcurementState.SUCCEEDED
    assert await bench.available() == 6
    await _vault_holds_exactly(bench, bench.kashangwl.issued_codes)
    answers = [(status, body) for _, _, status, body in bench.kashangwl.callbacks]
    assert answers
    assert all(a == (200, "ok") for a in answers)


async def test_a_forged_callback_is_refused_and_changes_nothing(bench):
    bench.kashangwl.faults.unknown_then_success = 1
    bench.kashangwl.settle_after = 60  # no genuine callback during the test
    p = await _buy(bench)
    assert p.state is ProcurementState.UNKNOWN
    order_id = bench.kashangwl.by_outer[p.our_ref]
    before = await bench.store.procurement_by_ref(p.our_ref)
    response = await bench.kashangwl.send_forged_callback(order_id)
    assert response.status_code == 403
    after = await bench.store.procurement_by_ref(p.our_ref)
    assert (after.state, after.received) == (before.state, before.received)


async def test_a_callback_naming_another_product_is_held_for_a_merchant(bench):
    alerts = []

    async def alert(msgid, params):
        alerts.append((msgid, params["ref"]))

    bench.service.alert = alert
    bench.kashangwl.faults.wrong_product_callback = 1
    bench.kashangwl.faults.hold_after_accept = 1
    p = await _buy(bench)
    await bench.kashangwl.drain()
    held = await bench.store.procurement_by_ref(p.our_ref)
    assert held.held
    assert "product" in held.detail
    assert held.state is ProcurementState.UNKNOWN
    assert await bench.service.resolve_due() == 0  # held ones wait for a merchant
    assert await bench.available() == 0
    assert alerts == [("supply.held", p.our_ref)]  # told once, though the supplier may retry its callback


async def test_out_of_balance_is_a_definitive_failure(bench):
    bench.kashangwl.balance = 100
    p = await _buy(bench)
    assert p.state is ProcurementState.FAILED
    assert p.detail == "supplier.insufficient_balance"
    assert bench.kashangwl.orders == {}


async def test_duplicate_and_missing_codes_are_counted_not_sold(bench):
    bench.kashangwl.faults.duplicate_codes = 1
    p = await _buy(bench)
    assert (p.state, p.received, p.duplicates, p.shortfall) == (ProcurementState.SUCCEEDED, 2, 1, 1)
    assert await bench.available() == 2
    # a code the vault already holds (from the first purchase) is not sold again
    bench.acgfaka.commodities["STEAM10"].cards[:1] = [bench.kashangwl.issued_codes[0]]
    again = await _buy(bench, quantity=1, supplier="acg", product="STEAM10", max_cost=CARD_PRICE + 10)
    assert (again.state, again.received, again.duplicates, again.shortfall) == (ProcurementState.SUCCEEDED, 0, 1, 1)
    assert await bench.available() == 2


async def test_acgfaka_answer_lost_stays_unknown_until_a_merchant_settles_it(bench):
    bench.acgfaka.faults.reset_after_accept = 1
    p = await _buy(bench, quantity=2, supplier="acg", product="STEAM10", max_cost=CARD_PRICE + 10)
    assert p.state is ProcurementState.UNKNOWN
    alerts = []

    async def alert(msgid, params):
        alerts.append((msgid, params["ref"], params["supplier_order"]))

    bench.service.alert = alert
    bench.service.policy = replace(bench.service.policy, alert_after=timedelta(0))
    await bench.service.resolve_due()
    await bench.service.resolve_due()
    assert (await bench.store.procurement_by_ref(p.our_ref)).state is ProcurementState.UNKNOWN
    assert bench.acgfaka.trade_requests == 1
    assert alerts == [("supply.unknown_long", p.our_ref, "-")]  # once, with what the merchant needs to look


async def test_one_live_procurement_per_order_and_one_open_restock_per_pool(bench):
    bench.kashangwl.faults.unknown_then_success = 1
    bench.kashangwl.settle_after = 60
    first = await _buy(bench)
    assert first.state is ProcurementState.UNKNOWN
    assert await _buy(bench) is None  # the pool's restock is unknown: no second purchase
    assert bench.kashangwl.buy_requests == 1


async def test_a_planned_procurement_never_sent_is_failed_and_cannot_be_sent_late(bench):
    from fulfillment.procurement import new_procurement_ref
    from storage.records_supply import NewProcurement
    from tests.storage.seed import NOW

    planned = await bench.store.plan_procurement(NewProcurement(new_procurement_ref(), "kw", "41847", 1, CARD_PRICE,
                                                                "CNY", bench.pool.id), NOW)
    assert await bench.service.resolve_due() == 1
    assert (await bench.store.procurement_by_ref(planned.our_ref)).state is ProcurementState.FAILED
    await bench.service.send(planned)
    assert bench.kashangwl.buy_requests == 0


async def test_the_callback_route_answers_ok_404_and_413(bench):
    async with httpx.AsyncClient() as client:
        assert (await client.post(f"{bench.notify_base}/nobody/notify", data={"a": "b"})).status_code == 404
        big = await client.post(f"{bench.notify_base}/kw/notify", content=b"x" * 70_000)
        assert big.status_code == 413
        forged = await client.post(f"{bench.notify_base}/kw/notify", data={"outer_order_id": "P1", "sign": "00"})
        assert forged.status_code == 403


async def test_a_process_that_dies_between_sent_and_the_answer_is_resolved_after_restart(bench):
    """The buyer's task dies while the supplier holds its answer (as a SIGKILL would leave it: `sent`, nothing
    settled); a fresh service (the restarted process, its own registry and breaker) queries and settles it."""
    from dataclasses import replace

    from fulfillment.procurement import ProcurementPolicy, ProcurementService
    from fulfillment.suppliers.registry import SupplierRegistry
    from tests.storage.seed import NOW

    record = await bench.store.supplier_by_name("kw")
    await bench.store.save_supplier(replace(record, notify_url=""), NOW)  # no callback: only a query can tell
    bench.kashangwl.faults.hold_after_accept = 1
    task = asyncio.ensure_future(_buy(bench))
    for _ in range(200):
        if bench.kashangwl.orders:
            break
        await asyncio.sleep(0.005)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    [p] = await bench.store.procurements([ProcurementState.SENT], 10)
    restarted = ProcurementService(bench.store, bench.vault, SupplierRegistry(bench.store, bench.vault), "other",
                                   ProcurementPolicy(sent_grace=timedelta(0)))
    assert await restarted.resolve_due() == 1
    done = await bench.store.procurement_by_ref(p.our_ref)
    assert (done.state, done.received) == (ProcurementState.SUCCEEDED, 3)
    assert bench.kashangwl.buy_requests == 1
    await _vault_holds_exactly(bench, bench.kashangwl.issued_codes)
    await restarted.registry.aclose()
