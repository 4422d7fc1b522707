"""acg-faka specifics: its signature, the key kept off the wire, manual delivery and no callbacks."""

from __future__ import annotations

import hashlib
from urllib.parse import parse_qs

import aiohttp
import pytest

from fulfillment.suppliers.acgfaka import AcgFakaConfig, AcgFakaSupplier, sign
from fulfillment.suppliers.errors import ForgedCallback, OrderNotFound, Rejected
from fulfillment.suppliers.protocol import Money, OrderStatus, ProductType

from .conftest import POLICY, Bench

pytestmark = pytest.mark.timeout(60)


def test_sign_is_md5_of_sorted_non_empty_pairs_and_the_key():
    params = {"num": "1", "app_id": "7", "password": "", "shared_code": "A", "sign": "x"}
    assert sign(params, "K") == hashlib.md5(b"app_id=7&num=1&shared_code=A&key=K").hexdigest()


async def test_the_app_key_never_travels(acgfaka: Bench):
    bodies: list[bytes] = []

    async def record(session: object, context: object, params: aiohttp.TraceRequestChunkSentParams) -> None:
        bodies.append(params.chunk)

    trace = aiohttp.TraceConfig()
    trace.on_request_chunk_sent.append(record)
    async with aiohttp.ClientSession(trace_configs=[trace]) as http:
        supplier = AcgFakaSupplier(AcgFakaConfig(acgfaka.url, acgfaka.fake.app_id, acgfaka.fake.app_key,
                                                 policy=POLICY), http)
        await supplier.balance()
        await supplier.buy_codes("ref-wire-1", acgfaka.card, 1, Money(990))
    assert len(bodies) == 3  # connect, inventory, trade
    for body in bodies:
        form = parse_qs(body.decode())
        assert "app_key" not in form
        assert acgfaka.fake.app_key not in body.decode()
        assert form["app_id"] == ["7"]


async def test_a_hand_delivered_commodity_is_processing_without_codes(acgfaka: Bench):
    acgfaka.fake.add_commodity("VIP", "VIP by hand", 500, stock=0, delivery_way=1)
    products = {p.product_id: p for p in await acgfaka.supplier.catalogue()}
    assert products["VIP"].product_type is ProductType.MANUAL
    order = await acgfaka.supplier.buy_codes("ref-hand-1", "VIP", 1, Money(500))
    assert order.status is OrderStatus.PROCESSING
    assert order.codes == ()


async def test_recharge_is_refused_before_sending(acgfaka: Bench):
    with pytest.raises(Rejected):
        await acgfaka.supplier.recharge("ref-top-1", acgfaka.card, "13800138000", 1, Money(990))
    assert acgfaka.fake.trade_requests == 0


async def test_query_by_an_unknown_trade_number_is_not_found(acgfaka: Bench):
    with pytest.raises(OrderNotFound):
        await acgfaka.supplier.query("ref-x", "1000000")


def test_every_callback_is_refused(acgfaka: Bench):
    assert acgfaka.supplier.callback_answer is None
    with pytest.raises(ForgedCallback):
        acgfaka.supplier.parse_callback({}, b"")
