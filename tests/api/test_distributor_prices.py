"""The signed order API sells to a distributor at its price list (discount off the `api` price, fixed prices, never
under cost), on each backend: the product list shows it, POST /orders debits exactly it."""

from __future__ import annotations

from fulfillment.distributors import DistributorDesk
from tests.api.conftest import PRICE


async def test_a_distributor_client_lists_and_pays_its_own_prices(api):
    desk = DistributorDesk(api.shop.store, api.keys)
    await desk.add("acme", api.key.client.name)
    await desk.set_discount("acme", "2000")  # 700 → 560
    listed = (await api.call("GET", "/api/v1/products")).json()
    prices = {p["sku"]: p["price"] for p in listed["products"]}
    assert prices[api.sku_slug] == PRICE * 8 // 10
    answer = await api.order("D-1", 3)
    assert answer.status_code == 201, answer.text
    assert answer.json()["amount"] == 3 * 560
    assert await api.shop.store.wallet_balances(api.key.client.id) == {"CNY": 10_000 - 3 * 560}
    lines = await api.shop.store.wallet_lines(api.key.client.id, 10)
    assert [(ln.kind, ln.amount) for ln in lines] == [("order", -1680), ("topup", 10_000)]
