"""The kamibot supplier adapter against a REAL kamibot shop serving its order API on 127.0.0.1 (shop A on the
`store` fixture: SQLite and PostgreSQL), with faults that lose the answer after A placed and paid the order."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fulfillment.api_clients import ApiKeys
from fulfillment.suppliers.errors import (
    AuthenticationFailed,
    ForgedCallback,
    InsufficientBalance,
    OrderNotFound,
    OutcomeUnknown,
    PriceAboveLimit,
    ProductUnavailable,
    Rejected,
)
from fulfillment.suppliers.protocol import Money, OrderStatus, ProductType, StockState, Supplier
from tests.fakes.loopback import free_port, serve, shut

from .kamibot_upstream import API_PRICE, Upstream, upstream

pytestmark = pytest.mark.timeout(60)
MAX = Money(API_PRICE, "CNY")


@pytest.fixture
async def shop_a(store: Any, tmp_path: Path) -> AsyncIterator[Upstream]:
    async with upstream(store, tmp_path / "a") as a:
        yield a


async def test_catalogue_wallet_buy_query_and_the_same_reference_again(shop_a: Upstream):
    supplier = shop_a.supplier()
    assert isinstance(supplier, Supplier)
    [product] = [p for p in await supplier.catalogue() if p.product_id == "game-1"]
    assert (product.cost, product.stock, product.stock_count, product.product_type) == (
        Money(API_PRICE, "CNY"), StockState.IN_STOCK, 10, ProductType.CARD)
    assert await supplier.balance() == Money(10_000, "CNY")
    # a buy answers with the codes A allocated, and debits our wallet there
    order = await supplier.buy_codes("PREF0001", "game-1", 3, MAX)
    [placed] = await shop_a.orders()
    assert order.status is OrderStatus.SUCCEEDED
    assert order.supplier_order_id == placed.ref
    assert sorted(order.codes) == sorted(await shop_a.codes_of(placed.id))
    assert (order.cost, order.product_id, order.quantity) == (Money(3 * API_PRICE, "CNY"), "game-1", 3)
    assert await supplier.balance() == Money(10_000 - 3 * API_PRICE, "CNY")
    again = await supplier.query("PREF0001")
    assert (again.status, again.codes) == (OrderStatus.SUCCEEDED, order.codes)
    # the same reference bought again, also concurrently: the first order, never a second
    repeats = await asyncio.gather(*(supplier.buy_codes("PREF0001", "game-1", 3, MAX) for _ in range(5)))
    assert {(r.supplier_order_id, r.codes) for r in repeats} == {(order.supplier_order_id, order.codes)}
    assert len(await shop_a.orders()) == 1
    assert await shop_a.wallet() == 10_000 - 3 * API_PRICE
    assert shop_a.api.order_posts == 6
    await supplier.aclose()


FAULTS = ["hold_after_accept", "reset_after_accept", "http_500_after_accept", "html_after_accept",
          "truncated_after_accept"]


async def test_an_answer_lost_after_a_placed_the_order_is_unknown_then_the_query_finds_it(shop_a: Upstream):
    supplier = shop_a.supplier()
    for n, fault in enumerate(FAULTS, 1):
        ref = f"PLOST{n:03d}"
        setattr(shop_a.faults, fault, 1)
        with pytest.raises(OutcomeUnknown):
            await supplier.buy_codes(ref, "game-1", 2, MAX)
        placed = await shop_a.orders()
        assert len(placed) == n, fault  # A did act on it: paid and allocated
        found = await supplier.query(ref)
        assert found.status is OrderStatus.SUCCEEDED, fault
        [mine] = [o for o in placed if o.ref == found.supplier_order_id]
        assert sorted(found.codes) == sorted(await shop_a.codes_of(mine.id)), fault
        retried = await supplier.buy_codes(ref, "game-1", 2, MAX)  # a retry after the lost answer
        assert retried.codes == found.codes, fault
        assert len(await shop_a.orders()) == n, fault
    assert await shop_a.wallet() == 10_000 - len(FAULTS) * 2 * API_PRICE
    await supplier.aclose()


async def test_refusals_are_definitive_and_change_nothing_at_a(store: Any, tmp_path: Path):
    async with upstream(store, tmp_path / "a", wallet=API_PRICE - 1) as poor:  # less than one code
        supplier = poor.supplier()
        with pytest.raises(InsufficientBalance):
            await supplier.buy_codes("PPOOR001", "game-1", 1, MAX)
        with pytest.raises(ProductUnavailable):
            await supplier.buy_codes("PNOSKU01", "no-such-sku", 1, MAX)
        await ApiKeys(poor.shop.store, poor.shop.vault).top_up(poor.key.client.key_id, 100 * API_PRICE, "CNY",
                                                               "topped up")
        with pytest.raises(ProductUnavailable):  # more than A has: A refuses OUT_OF_STOCK
            await supplier.buy_codes("PSTOCK01", "game-1", 11, MAX)
        with pytest.raises(PriceAboveLimit):
            await supplier.buy_codes("PPRICE01", "game-1", 1, Money(API_PRICE - 1, "CNY"))
        with pytest.raises(Rejected):
            await supplier.recharge("PRECH001", "game-1", "13800138000", 1, MAX)
        assert await poor.orders() == []
        assert await poor.wallet() == 101 * API_PRICE - 1
        assert await store.pool_available(poor.seeded.pool.id) == 10
        with pytest.raises(OrderNotFound):
            await supplier.query("PPOOR001")
        await supplier.aclose()
        impostor = poor.supplier(secret="not-the-secret")
        with pytest.raises(AuthenticationFailed):
            await impostor.balance()
        with pytest.raises(AuthenticationFailed):
            await impostor.buy_codes("PAUTH001", "game-1", 1, MAX)
        await impostor.aclose()
        assert await poor.orders() == []


async def test_signed_callbacks_from_a_verify_and_forged_ones_are_refused(shop_a: Upstream):
    seen: list[tuple[dict[str, str], bytes]] = []

    async def notify(request: Request) -> Response:
        seen.append((dict(request.headers), await request.body()))
        return Response("ok")

    port = free_port()
    server, task = await serve(Starlette(routes=[Route("/suppliers/shopA/notify", notify, methods=["POST"])]), port)
    notify_url = f"http://127.0.0.1:{port}/suppliers/shopA/notify"
    supplier = shop_a.supplier(notify_url)
    try:
        bought = await supplier.buy_codes("PCALL001", "game-1", 1, MAX)
        await shop_a.deliver()  # A completes the order and sends order.delivered, signed with our key
        [(headers, body)] = seen
        event = supplier.parse_callback(headers, body)
        assert (event.our_ref, event.status, event.supplier_order_id, event.product_id, event.quantity) == (
            "PCALL001", OrderStatus.SUCCEEDED, bought.supplier_order_id, "game-1", 1)
        assert event.codes == ()  # callbacks carry no codes: the procurement reads them with a query
        with pytest.raises(ForgedCallback):  # the same request again: a replay
            supplier.parse_callback(headers, body)
        forged = json.loads(body)
        forged["type"] = "order.failed"
        with pytest.raises(ForgedCallback):
            supplier.parse_callback(headers, json.dumps(forged).encode())
        with pytest.raises(ForgedCallback):  # signed for shop A's key by someone else
            shop_a.supplier(notify_url, secret="another-secret").parse_callback(headers, body)
        with pytest.raises(ForgedCallback):  # a supplier without a notify URL expects none
            shop_a.supplier().parse_callback(headers, body)
    finally:
        await supplier.aclose()
        await shut(server, task)


# -- the upstream's answers read strictly (no server needed: the mapping itself) ---------------------------------
def _offline() -> Any:
    from fulfillment.suppliers.kamibot import KamibotConfig, KamibotSupplier

    return KamibotSupplier(KamibotConfig("http://127.0.0.1:9", "kid", "secret", notify_url="http://b/notify"))


def _view(state: str, codes: list[str], **extra: Any) -> dict[str, Any]:
    return {"client_order_no": "PREF0001", "order_no": "A1", "state": state, "sku": "game-1", "quantity": 2,
            "amount": 1400, "currency": "CNY", "created_at": "2026-12-02T10:00:00+00:00", "codes": codes, **extra}


@pytest.mark.parametrize(("state", "codes", "status"), [
    ("delivered", ["C1", "C2"], OrderStatus.SUCCEEDED), ("delivering", ["C1", "C2"], OrderStatus.SUCCEEDED),
    ("delivering", [], OrderStatus.PROCESSING), ("delivered", ["C1"], OrderStatus.UNKNOWN),
    ("paid", [], OrderStatus.PROCESSING), ("review", [], OrderStatus.PENDING),
    ("awaiting_payment", [], OrderStatus.PENDING), ("refunded", [], OrderStatus.FAILED),
    ("failed", [], OrderStatus.FAILED), ("expired", [], OrderStatus.FAILED), ("rejected", [], OrderStatus.FAILED),
    ("teleported", [], OrderStatus.UNKNOWN)])
def test_upstream_order_states_map_to_ours(state: str, codes: list[str], status: OrderStatus):
    order = _offline()._order(_view(state, codes), "PREF0001")
    assert order.status is status
    assert order.codes == (tuple(codes) if status is OrderStatus.SUCCEEDED else ())
    assert (order.supplier_order_id, order.cost, order.product_id, order.quantity) == (
        "A1", Money(1400, "CNY"), "game-1", 2)


@pytest.mark.parametrize("bad", [
    {"client_order_no": "PSOMEONE"}, {"amount": -1}, {"amount": 14.0}, {"amount": "1400"}, {"amount": 10**12},
    {"quantity": 0}, {"state": None}, {"order_no": ""}, {"codes": "C1\nC2"}, {"codes": [1, 2]}, {"currency": ""}])
def test_an_order_answer_that_breaks_the_schema_is_refused(bad: dict[str, Any]):
    from fulfillment.suppliers.errors import BadAnswer

    with pytest.raises(BadAnswer):
        _offline()._order({**_view("delivered", ["C1", "C2"]), **bad}, "PREF0001")


def test_catalogue_entries_with_absurd_or_missing_values_are_skipped():
    good = {"sku": "game-1", "price": 700, "currency": "CNY", "stock": "low", "available": 2, "name_en": "1 code"}
    product = _offline()._product(good)
    assert (product.cost, product.stock, product.stock_count) == (Money(700, "CNY"), StockState.IN_STOCK, 2)
    from fulfillment.suppliers.errors import BadAnswer

    for bad in ({"price": -5}, {"price": 7.5}, {"available": -1}, {"stock": "plenty"}, {"sku": "../x"}):
        with pytest.raises(BadAnswer):
            _offline()._product({**good, **bad})


def test_callbacks_without_a_valid_signature_or_body_are_forged():
    from fulfillment.api_signing import Signer

    supplier = _offline()
    body = b'{"type":"order.delivered","order":{"client_order_no":"PREF0001"}}'
    for headers in ({}, Signer("other-key", "secret").headers("POST", "/notify", "", body),
                    Signer("kid", "secret").headers("POST", "/notify", "", body, timestamp=1_000_000)):
        with pytest.raises(ForgedCallback):
            supplier.parse_callback(headers, body)
    for garbage in (b"not json", b"[]", b'{"type":"order.delivered","order":{"client_order_no":"bad ref!"}}'):
        with pytest.raises(ForgedCallback):
            supplier.parse_callback(Signer("kid", "secret").headers("POST", "/notify", "", garbage), garbage)
    signed = Signer("kid", "secret").headers("POST", "/notify", "", body)
    assert supplier.parse_callback(signed, body).status is OrderStatus.SUCCEEDED
