"""kashangwl specifics: its signature, the documented unknown states, recharges and callbacks."""

from __future__ import annotations

import hashlib
from urllib.parse import urlencode

import pytest

from fulfillment.suppliers.errors import ForgedCallback, InvalidTarget, OrderNotFound, OutcomeUnknown
from fulfillment.suppliers.kashangwl import sign
from fulfillment.suppliers.protocol import Money, OrderStatus, StockState
from tests.fakes.supplier_kashangwl import FakeProduct

from .conftest import CARD_PRICE, Bench

pytestmark = pytest.mark.timeout(60)
FORM = {"content-type": "application/x-www-form-urlencoded"}


def test_sign_is_md5_of_key_then_sorted_names_and_values():
    # the SDK's worked example: "{key}customer_id1192442order_id827669582783timestamp1626845767"
    params = {"timestamp": "1626845767", "order_id": "827669582783", "customer_id": "1192442"}
    expected = hashlib.md5(b"KEYcustomer_id1192442order_id827669582783timestamp1626845767").hexdigest()
    assert sign("KEY", params) == expected
    assert sign("KEY", {**params, "sign": "ignored"}) == expected


async def test_server_error_after_accepting_is_unknown_and_query_by_reference_resolves_it(kashangwl: Bench):
    kashangwl.fake.faults.server_error_after_accept = 1
    with pytest.raises(OutcomeUnknown):
        await kashangwl.supplier.buy_codes("ref-se-1", kashangwl.card, 2, kashangwl.max_cost())
    order = await kashangwl.supplier.query("ref-se-1")
    assert order.status is OrderStatus.SUCCEEDED
    assert len(order.codes) == 2


async def test_unknown_then_success_settles_by_callback_and_query(kashangwl: Bench):
    kashangwl.fake.faults.unknown_then_success = 1
    order = await kashangwl.supplier.buy_codes("ref-501-ok", kashangwl.card, 1, kashangwl.max_cost())
    assert order.status is OrderStatus.UNKNOWN
    assert order.codes == ()
    await kashangwl.fake.drain()
    callback = next(o for o in kashangwl.receiver.accepted if o.our_ref == "ref-501-ok")
    assert callback.status is OrderStatus.SUCCEEDED
    assert callback.codes == ()  # codes are unsigned in callbacks: fetched by query
    settled = await kashangwl.supplier.query("ref-501-ok")
    assert settled.status is OrderStatus.SUCCEEDED
    assert len(settled.codes) == 1


async def test_unknown_then_failed_settles_failed_and_the_supplier_refunds(kashangwl: Bench):
    kashangwl.fake.faults.unknown_then_failed = 1
    before = kashangwl.fake.balance
    order = await kashangwl.supplier.buy_codes("ref-501-ko", kashangwl.card, 1, kashangwl.max_cost())
    assert order.status is OrderStatus.UNKNOWN
    await kashangwl.fake.drain()
    assert kashangwl.receiver.accepted[-1].status is OrderStatus.FAILED
    assert (await kashangwl.supplier.query("ref-501-ko")).status is OrderStatus.FAILED
    assert kashangwl.fake.balance == before


async def test_recharge_is_processing_until_the_callback_says_succeeded(kashangwl: Bench):
    order = await kashangwl.supplier.recharge("ref-top-1", "41848", "13800138000", 1, Money(1000))
    assert order.status is OrderStatus.PROCESSING
    await kashangwl.fake.drain()
    assert kashangwl.receiver.accepted[-1].status is OrderStatus.SUCCEEDED
    assert (await kashangwl.supplier.query("ref-top-1", order.supplier_order_id)).status is OrderStatus.SUCCEEDED


async def test_an_invalid_recharge_account_is_refused_definitively(kashangwl: Bench):
    with pytest.raises(InvalidTarget):
        await kashangwl.supplier.recharge("ref-top-2", "41848", "12345", 1, Money(1000))
    requests = kashangwl.fake.buy_requests
    with pytest.raises(InvalidTarget):
        await kashangwl.supplier.recharge("ref-top-3", "41848", "  ", 1, Money(1000))
    assert kashangwl.fake.buy_requests == requests  # an empty account is refused before sending
    assert kashangwl.booked == 0


async def test_callback_arriving_before_the_buy_answer(kashangwl: Bench):
    kashangwl.fake.faults.callback_before_response = 1
    order = await kashangwl.supplier.buy_codes("ref-early-1", kashangwl.card, 1, kashangwl.max_cost())
    assert [o.our_ref for o in kashangwl.receiver.accepted] == ["ref-early-1"]  # already there on return
    assert kashangwl.receiver.accepted[0].supplier_order_id == order.supplier_order_id


async def test_duplicate_callbacks_parse_to_the_same_order(kashangwl: Bench):
    kashangwl.fake.faults.duplicate_callbacks = 1
    await kashangwl.supplier.buy_codes("ref-twice-1", kashangwl.card, 1, kashangwl.max_cost())
    await kashangwl.fake.drain()
    first, second = kashangwl.receiver.accepted
    assert first == second


async def test_callback_naming_another_product_is_signed_but_visibly_different(kashangwl: Bench):
    kashangwl.fake.faults.wrong_product_callback = 1
    order = await kashangwl.supplier.buy_codes("ref-wrong-1", kashangwl.card, 1, kashangwl.max_cost())
    await kashangwl.fake.drain()
    callback = kashangwl.receiver.accepted[0]
    assert callback.supplier_order_id == order.supplier_order_id
    assert callback.product_id != kashangwl.card  # the procurement side holds it for a merchant


async def test_callbacks_are_retried_until_answered_ok(kashangwl: Bench):
    kashangwl.receiver.fail_next = 2
    order = await kashangwl.supplier.buy_codes("ref-retry-1", kashangwl.card, 1, kashangwl.max_cost())
    await kashangwl.fake.drain()
    attempts = [(a, status) for oid, a, status, _ in kashangwl.fake.callbacks if oid == order.supplier_order_id]
    assert attempts == [(1, 500), (2, 500), (3, 200)]
    assert [o.our_ref for o in kashangwl.receiver.accepted] == ["ref-retry-1"]


async def test_a_callback_signed_with_another_key_gets_403(kashangwl: Bench):
    order = await kashangwl.supplier.buy_codes("ref-forge-1", kashangwl.card, 1, kashangwl.max_cost())
    await kashangwl.fake.drain()
    accepted = len(kashangwl.receiver.accepted)
    response = await kashangwl.fake.send_forged_callback(order.supplier_order_id)
    assert response.status_code == 403
    assert kashangwl.receiver.refused == 1
    assert len(kashangwl.receiver.accepted) == accepted


def _valid_form(bench: Bench, **changes: str) -> dict[str, str]:
    from tests.fakes.supplier_kashangwl import FakeOrder

    order = FakeOrder("900001", "ref-cb", bench.card, 1, CARD_PRICE, 200,
                      cards=[{"card_no": "N1", "card_password": "P1"}])
    bench.fake.products.setdefault(bench.card, FakeProduct(bench.card, "x", CARD_PRICE))
    form = bench.fake.callback_form(order)
    form.update(changes)
    return form


def test_parse_callback_accepts_a_valid_form_and_drops_its_unsigned_codes(kashangwl: Bench):
    order = kashangwl.supplier.parse_callback(FORM, urlencode(_valid_form(kashangwl)).encode())
    assert order.status is OrderStatus.SUCCEEDED
    assert order.our_ref == "ref-cb"
    assert order.supplier_order_id == "900001"
    assert order.codes == ()


@pytest.mark.parametrize("tamper", [{"state": "500"}, {"quantity": "9"}, {"sign": "0" * 32}, {"customer_id": "1"}])
def test_parse_callback_refuses_any_tampered_signed_field(kashangwl: Bench, tamper: dict[str, str]):
    with pytest.raises(ForgedCallback):
        kashangwl.supplier.parse_callback(FORM, urlencode(_valid_form(kashangwl, **tamper)).encode())


def test_parse_callback_refuses_unsigned_repeated_and_garbage_bodies(kashangwl: Bench):
    form = _valid_form(kashangwl)
    unsigned = {k: v for k, v in form.items() if k != "sign"}
    repeated = urlencode(form) + "&state=500"
    for body in (urlencode(unsigned).encode(), repeated.encode(), b"\xff\xfe", b"<html>", b"{not json"):
        with pytest.raises(ForgedCallback):
            kashangwl.supplier.parse_callback(FORM, body)


async def test_query_of_an_unknown_reference_is_not_found(kashangwl: Bench):
    with pytest.raises(OrderNotFound):
        await kashangwl.supplier.query("ref-never")


async def test_catalogue_reports_maintenance_and_empty_stock(kashangwl: Bench):
    kashangwl.fake.products["41848"].stock_state = 2
    kashangwl.fake.products["41847"].stock = 0
    stock = {p.product_id: p.stock for p in await kashangwl.supplier.catalogue()}
    assert stock == {"41847": StockState.OUT_OF_STOCK, "41848": StockState.OFF_SALE}


async def test_catalogue_skips_a_product_with_an_absurd_price(kashangwl: Bench):
    kashangwl.fake.products["41848"].price = 10**12
    assert [p.product_id for p in await kashangwl.supplier.catalogue()] == ["41847"]


async def test_recharge_params_are_read_for_recharge_products(kashangwl: Bench):
    params = await kashangwl.supplier.recharge_params("41848")
    assert params["recharge_account_label"] == "手机号码"
