"""Supplier reconciliation against the fake 卡商网 supplier (its order query) and against an imported statement:
planted missing, extra, cost and state mismatches are found, exactly those; a bad statement changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from fulfillment.reconcile import Kind, ReconcileError, Reconciliation
from fulfillment.reconcile_supplier import SupplierRecords
from storage.records_supply import NewProcurement, ProcurementState, Settlement
from tests.fulfillment.procurement.conftest import CARD_PRICE, bench  # noqa: F401 - `bench` is a fixture used here
from tests.fulfillment.procurement.test_procurement import _buy, _settled
from tests.reconcile.conftest import tomorrow

K = Kind


def _today():
    return datetime.now(UTC).astimezone(Reconciliation(None, "Asia/Shanghai").zone).date()  # type: ignore[arg-type]


async def _recon(bench):  # noqa: F811
    records = SupplierRecords(bench.store, bench.registry.get)
    recon = Reconciliation(bench.store, "Asia/Shanghai", clock=tomorrow)
    recon.supplier = records.source
    return recon, records


async def _bought(bench, n: int) -> list[str]:  # noqa: F811
    refs = []
    for _ in range(n):
        p = await _buy(bench, quantity=1)
        assert await _settled(bench, p.our_ref) == ProcurementState.SUCCEEDED
        refs.append(p.our_ref)
    return refs


async def _only_ours(bench, ref: str, cost: int) -> None:  # noqa: F811
    """A procurement the shop recorded as bought that the supplier never saw."""
    now = datetime.now(UTC)
    await bench.store.plan_procurement(NewProcurement(ref, "kw", "41847", 1, CARD_PRICE, "CNY", bench.pool.id), now)
    await bench.store.mark_procurement_sent(ref, now)
    await bench.store.settle_procurement(ref, Settlement(ProcurementState.SUCCEEDED, "KW-GHOST", cost), [], now)


async def test_query_api_finds_missing_cost_and_state_mismatches_exactly(bench):  # noqa: F811
    recon, _ = await _recon(bench)
    clean, costly, failed_there = await _bought(bench, 3)
    bench.kashangwl.orders[bench.kashangwl.by_outer[costly]].total = CARD_PRICE + 50
    bench.kashangwl.orders[bench.kashangwl.by_outer[failed_there]].state = 500
    await _only_ours(bench, "P-GHOST-1", CARD_PRICE)

    outcome = await recon.run("supplier:kw", _today(), "console", "m1")

    assert {(d.kind, d.reference) for d in outcome.new} == {
        (K.COST_MISMATCH, costly), (K.STATE_MISMATCH, failed_there), (K.MISSING_AT_SUPPLIER, "P-GHOST-1")}
    cost = next(d for d in outcome.new if d.kind == K.COST_MISMATCH)
    assert (cost.source, cost.expected, cost.actual) == ("supplier:kw", CARD_PRICE, CARD_PRICE + 50)
    assert clean not in {d.reference for d in outcome.new}
    assert (await recon.run("supplier:kw", _today(), "console", "m1")).new == ()
    with pytest.raises(ReconcileError) as unknown:
        await recon.run("supplier:nobody", _today(), "console", "m1")
    assert unknown.value.message_id == "reconcile.unknown_source"


async def test_statement_finds_missing_extra_and_cost_mismatch_exactly(bench):  # noqa: F811
    recon, records = await _recon(bench)
    a, b, missing = await _bought(bench, 3)

    def statement(text: str):
        async def collect(day, zone):
            return await records.by_statement("kw", day, zone, text)
        return collect

    good = ("our_ref,supplier_order_id,product_id,cost,currency,state\n"
            f"{a},K1,41847,9.90,CNY,succeeded\n{b},K2,41847,10.40,CNY,succeeded\n"
            "X-THEIRS-1,K3,41847,9.90,CNY,succeeded\nX-FAILED,K4,41847,9.90,CNY,failed\n")
    for bad, reason in (("our_ref,cost,currency,state\n", "supplier_order_id"),
                        (good.replace("9.90,CNY,succeeded", "9.901,CNY,succeeded", 1), "cents"),
                        (good.replace("CNY", "USD", 1), "currency"),
                        (good.replace("succeeded", "lost", 1), "state")):
        with pytest.raises(ReconcileError) as refused:
            await recon.run("supplier:kw", _today(), "console", "m1", statement(bad))
        assert refused.value.message_id == "reconcile.bad_statement"
        assert reason in str(refused.value)
    assert await bench.store.discrepancies(True, 10) == []

    outcome = await recon.run("supplier:kw", _today(), "console", "m1", statement(good))

    assert {(d.kind, d.reference) for d in outcome.new} == {
        (K.COST_MISMATCH, b), (K.EXTRA_AT_SUPPLIER, "X-THEIRS-1"), (K.MISSING_AT_SUPPLIER, missing)}
    assert next(d for d in outcome.new if d.kind == K.COST_MISMATCH).actual == 1040
