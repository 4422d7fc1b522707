"""POST /api/v1/orders and the reads around it, on both backends: a wallet-paid order answered with its codes,
debited once, readable again; the catalogue with the API price and stock state."""

from __future__ import annotations

from fulfillment.aftersales import AfterSalesService
from fulfillment.api_signing import Signer
from tests.api.conftest import PRICE, ApiShop


async def test_signed_order_is_answered_with_its_codes_and_debits_the_wallet_once(api: ApiShop) -> None:
    # given a funded client
    # when it orders two codes
    r = await api.order("A-1", 2)
    # then the answer carries both codes, the wallet paid exactly the price once
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["client_order_no"] == "A-1"
    assert body["quantity"] == 2
    assert body["amount"] == 2 * PRICE
    assert len(body["codes"]) == 2
    assert all(c.startswith("CODE-") for c in body["codes"])
    assert await api.shop.store.wallet_balances(api.key.client.id) == {"CNY": 10_000 - 2 * PRICE}
    lines = await api.shop.store.wallet_lines(api.key.client.id, 10)
    assert [(ln.kind, ln.amount, ln.balance_after) for ln in lines] == [
        ("order", -2 * PRICE, 10_000 - 2 * PRICE), ("topup", 10_000, 10_000)]
    # and the order reads back with the same codes, and the wallet endpoint agrees
    again = await api.call("GET", "/api/v1/orders/A-1")
    assert again.status_code == 200
    assert again.json()["codes"] == body["codes"]
    wallet = await api.call("GET", "/api/v1/wallet")
    assert wallet.json() == {"balances": {"CNY": 10_000 - 2 * PRICE}}


async def test_delivery_worker_completes_api_orders(api: ApiShop) -> None:
    r = await api.order("A-1", 1)
    assert r.json()["state"] == "delivering"
    await api.shop.delivery.drain()
    after = await api.call("GET", "/api/v1/orders/A-1")
    assert after.json()["state"] == "delivered"
    assert after.json()["codes"] == r.json()["codes"]


async def test_same_order_number_and_body_returns_the_first_order(api: ApiShop) -> None:
    first = await api.order("A-1", 1)
    second = await api.order("A-1", 1)
    assert second.status_code == 201
    assert second.json() == first.json()
    assert await api.shop.store.wallet_balances(api.key.client.id) == {"CNY": 10_000 - PRICE}


async def test_products_list_the_api_price_and_stock(api: ApiShop) -> None:
    r = await api.call("GET", "/api/v1/products")
    assert r.status_code == 200
    mine = [p for p in r.json()["products"] if p["sku"] == api.sku_slug]
    assert mine
    assert mine[0]["price"] == PRICE
    assert mine[0]["currency"] == "CNY"
    assert mine[0]["stock"] == "in_stock"
    assert mine[0]["available"] == 20
    one = await api.call("GET", f"/api/v1/products/{api.sku_slug}")
    assert one.json() == mine[0]
    # a SKU without an API price is not offered
    assert all(p["sku"] == api.sku_slug for p in r.json()["products"])


async def test_signed_query_string_is_accepted(api: ApiShop) -> None:
    r = await api.call("GET", "/api/v1/products", query="b=2&a=1&a=0")
    assert r.status_code == 200


async def test_wallet_refund_credits_once(api: ApiShop) -> None:
    from fulfillment.api_orders import WalletProvider

    r = await api.order("A-1", 1)
    order = await api.shop.store.order_by_ref(r.json()["order_no"])
    assert order is not None
    provider = WalletProvider(api.shop.store)
    await provider.refund(order, "x", order.amount)
    await provider.refund(order, "x", order.amount)
    assert await api.shop.store.wallet_balances(api.key.client.id) == {"CNY": 10_000}


async def test_refund_request_goes_to_the_merchant_who_refunds_to_the_wallet(api: ApiShop) -> None:
    # given a delivered API order
    placed = await api.order("A-1", 1)
    await api.shop.delivery.drain()
    # when the client asks for a refund (twice: one ticket)
    for _ in range(2):
        asked = await api.call("POST", "/api/v1/orders/A-1/refund-request", {"reason": "customer cancelled"})
        assert asked.status_code == 202
    order = await api.shop.store.order_by_ref(placed.json()["order_no"])
    assert order is not None
    tickets = await api.shop.store.live_tickets(10, order.id)
    assert [(t.kind, t.last_message) for t in tickets] == [("refund", "customer cancelled")]
    # then the merchant's refund in chat puts the money back in the wallet, once
    await AfterSalesService(api.shop.store).request_refund(order.ref, "m1")
    await api.shop.delivery.drain()
    after = await api.call("GET", "/api/v1/orders/A-1")
    assert after.json()["state"] == "refunded"
    assert await api.shop.store.wallet_balances(api.key.client.id) == {"CNY": 10_000}
    again = await api.call("POST", "/api/v1/orders/A-1/refund-request", {"reason": "again"})
    assert again.json()["code"] == "NOT_REFUNDABLE"


async def test_a_client_price_list_sets_what_the_client_sees_and_pays(api: ApiShop) -> None:
    # given the client's own price of 500 (the api channel price is 700) and another client without one
    sku = await api.shop.store.sku_by_slug(api.sku_slug)
    assert sku is not None
    await api.keys.set_price(api.key.client.key_id, sku.id, 500, "CNY")
    other = await api.keys.create("other", ["catalog:read"])
    # then each sees its own price, and the order is charged at the client's
    mine = await api.call("GET", f"/api/v1/products/{api.sku_slug}")
    theirs = await api.call("GET", f"/api/v1/products/{api.sku_slug}", signer=Signer(other.client.key_id, other.secret))
    assert (mine.json()["price"], theirs.json()["price"]) == (500, PRICE)
    placed = await api.order("A-1", 2)
    assert placed.json()["amount"] == 1_000
    assert await api.shop.store.wallet_balances(api.key.client.id) == {"CNY": 9_000}
    # and cleared, the channel price applies again
    await api.keys.set_price(api.key.client.key_id, sku.id, None, "CNY")
    assert await api.shop.store.api_prices(api.key.client.id) == {}
