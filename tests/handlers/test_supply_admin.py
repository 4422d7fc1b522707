"""Merchant supply commands in the console chat against the fake kashangwl supplier on loopback."""

from __future__ import annotations

from datetime import UTC, datetime

from fulfillment.procurement import ProcurementService
from fulfillment.sourcing import SourcingService
from fulfillment.suppliers.credentials import seal_secret
from fulfillment.suppliers.registry import SupplierRegistry
from fulfillment.supply_desk import SupplyDesk
from storage.records_supply import NewProcurement, SupplierRecord
from tests.fakes.supplier_faults import Running
from tests.fakes.supplier_kashangwl import FakeKashangwl, FakeProduct


async def test_sources_restock_and_procurements_in_chat(demo):
    fake = FakeKashangwl(balance=50_000)
    fake.add_product(FakeProduct("41847", "Genshin 60", 450, stock=20))
    ctx = demo.merchant.ctx
    shop = demo.shop
    async with Running(fake.app) as running:
        await shop.store.save_supplier(SupplierRecord("kw", "kashangwl", running.url, fake.customer_id,
                                                      seal_secret(shop.vault, "kw", fake.key),
                                                      product_ids=("41847",), read_timeout_ms=2000),
                                       datetime.now(UTC))
        registry = SupplierRegistry(shop.store, shop.vault)
        sourcing = SourcingService(shop.store, registry, ProcurementService(shop.store, shop.vault, registry, "t"),
                                   "t")
        ctx.supply = SupplyDesk(shop.store, sourcing)
        await demo.customer.say("/suppliers")
        assert "kw" not in demo.out.text()  # customers do not see supply commands
        demo.out.clear()
        await demo.merchant.say("/suppliers")
        assert demo.out.text() == "kw: kashangwl, ok"
        demo.out.clear()
        await demo.merchant.say("/supplier kw balance")
        assert "kw: balance" in demo.out.text()
        assert "500" in demo.out.text()
        demo.out.clear()
        await demo.merchant.say("/supplier kw products")
        assert "41847 Genshin 60" in demo.out.text()
        demo.out.clear()
        await demo.merchant.say("/source genshin-60 own kw:41847 max_cost=500 restock=5")
        assert "Sources of genshin-60: kw:41847; max cost 500, restock 5." in demo.out.text()
        before = await shop.store.pool_available((await shop.store.pool_by_slug("genshin-60")).id)
        demo.out.clear()
        await demo.merchant.say("/restock genshin-60 3 from=kw")
        assert "3 codes received, 0 missing" in demo.out.text()
        assert await shop.store.pool_available((await shop.store.pool_by_slug("genshin-60")).id) == before + 3
        assert len(fake.orders) == 1
        demo.out.clear()
        await demo.merchant.say("/procurements")
        assert demo.out.text() == "No such procurements."
        demo.out.clear()
        await demo.merchant.say("/source genshin-60 nobody:1")
        assert demo.out.text() == "No supplier named nobody."
        audit = [a[3] for a in await shop.store.audit_entries(20)]
        assert "restock" in audit
        assert fake.key not in demo.out.text()
        # an order whose answer was lost and that its supplier cannot find: a merchant settles it
        pool = await shop.store.pool_by_slug("genshin-60")
        now = datetime.now(UTC)
        await shop.store.plan_procurement(NewProcurement("PLOST1", "kw", "41847", 2, 500, "CNY", pool.id), now)
        await shop.store.mark_procurement_sent("PLOST1", now)
        await shop.store.mark_procurement_unknown("PLOST1", "supplier.outcome_unknown", now)
        demo.out.clear()
        await demo.merchant.say("/procurements unknown")
        assert demo.out.text() == "PLOST1 kw:41847 ×2 unknown supplier.outcome_unknown"
        demo.out.clear()
        await demo.merchant.say("/procurement plost1 failed")
        assert demo.out.text().startswith("PLOST1 kw:41847 ×2 failed settled by console:")
        assert "procurement.settle" in [a[3] for a in await shop.store.audit_entries(20)]
        demo.out.clear()
        await demo.merchant.say("/procurement PLOST1 succeeded")  # settled already: nothing changes
        assert " failed " in demo.out.text()
        await registry.aclose()


async def test_low_balance_alert_reaches_the_merchants_in_their_language(demo):
    from bot.demo import MERCHANT_ID
    from bot.supply import merchant_alert
    from handlers.types import Reply

    async def send(chat_id: str, reply: Reply) -> None:
        demo.out.write(f"[to {chat_id}] {reply.text}")

    ctx = demo.merchant.ctx
    ctx.senders["console"] = send
    ctx.languages[("console", MERCHANT_ID)] = "zh_CN"
    demo.out.clear()
    await merchant_alert(ctx)("supply.low_balance", {"name": "kw", "amount": 4020, "currency": "CNY",
                                                     "threshold": 5000})
    assert demo.out.text().startswith(f"[to {MERCHANT_ID}] ⚠️ 供应商 kw：余额")
    assert "40.20" in demo.out.text()
