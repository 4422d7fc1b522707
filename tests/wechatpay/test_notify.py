"""POST /pay/wechat/notify end to end: a signed, encrypted notification pays the order once; bad input changes
nothing and is answered FAIL so WeChat Pay retries."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from storage.records import OrderState


async def _prepaid(env, openid="o-buyer-1"):
    order = await env.checkout(openid)
    page = await env.get(env.link(order, openid))
    assert page.status_code == 200
    return order


async def test_notification_pays_order_allocates_codes_and_queues_delivery(env):
    order = await _prepaid(env)
    response = await env.fake.notify_paid(order.ref, "o-buyer-1")
    assert response.status_code == 204
    assert response.content == b""
    paid = await env.order(order)
    assert paid.state == OrderState.DELIVERING  # paid, codes allocated, delivery queued
    assert len(await env.shop.store.order_items(order.id)) == 1
    assert await env.shop.store.pending_outbox() == 1
    provider, txn, amount = await env.shop.store.order_payment(order.id)
    assert (provider, amount) == ("wechatpay", 1000)
    assert txn == env.fake.transactions[order.ref]["transaction_id"]
    await env.shop.delivery.drain()
    assert (await env.order(order)).state == OrderState.DELIVERED
    assert [d.order.id for d in env.channel.sent] == [order.id]
    assert len(env.channel.sent[0].codes) == 1


async def test_replay_of_a_processed_notification_is_answered_success_and_changes_nothing(env):
    """A replay (or WeChat Pay's retry after our answer was lost) is not processed again, and not refused either:
    a refusal would have WeChat Pay retrying it for a day."""
    order = await _prepaid(env)
    headers, body = env.fake.notification("TRANSACTION.SUCCESS", env.fake.pay(order.ref, "o-buyer-1"))
    first = await env.fake.send(headers, body)
    again = await env.fake.send(headers, body)
    assert first.status_code == 204
    assert again.status_code == 204
    await env.shop.delivery.drain()
    assert len(env.channel.sent) == 1


async def test_replayed_payment_error_is_not_counted_twice(env):
    order = await _prepaid(env)
    failed = []

    async def count(order, fingerprint):
        failed.append(order.id)

    env.wx.notifications.on_failed_payment = count
    headers, body = env.fake.notification("TRANSACTION.PAYERROR",
                                          env.fake.pay(order.ref, "o-buyer-1", state="PAYERROR"))
    assert (await env.fake.send(headers, body)).status_code == 204
    assert (await env.fake.send(headers, body)).status_code == 204
    assert failed == [order.id]


async def test_forged_signature_is_rejected_and_changes_nothing(env):
    order = await _prepaid(env)
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    headers, body = env.fake.notification("TRANSACTION.SUCCESS", env.fake.pay(order.ref, "o-buyer-1"), key=forger)
    response = await env.fake.send(headers, body)
    assert response.status_code == 401
    assert response.json()["code"] == "FAIL"
    assert (await env.order(order)).state == OrderState.AWAITING_PAYMENT
    assert await env.shop.store.order_payment(order.id) is None


async def test_tampered_body_is_rejected(env):
    order = await _prepaid(env)
    headers, body = env.fake.notification("TRANSACTION.SUCCESS", env.fake.pay(order.ref, "o-buyer-1"))
    tampered = body.replace(b"TRANSACTION.SUCCESS", b"TRANSACTION.SUCCESs")
    response = await env.fake.send(headers, tampered)
    assert response.status_code == 401
    assert (await env.order(order)).state == OrderState.AWAITING_PAYMENT


@pytest.mark.parametrize("skew", [-310, 310, -3600])  # margin: a loaded machine takes seconds to send
async def test_timestamp_more_than_five_minutes_away_is_rejected(env, skew):
    order = await _prepaid(env)
    headers, body = env.fake.notification("TRANSACTION.SUCCESS", env.fake.pay(order.ref, "o-buyer-1"),
                                          timestamp=int(time.time()) + skew)
    response = await env.fake.send(headers, body)
    assert response.status_code == 401
    assert await env.shop.store.order_payment(order.id) is None


async def test_unknown_serial_is_rejected(env):
    order = await _prepaid(env)
    headers, body = env.fake.notification("TRANSACTION.SUCCESS", env.fake.pay(order.ref, "o-buyer-1"),
                                          serial="PUB_KEY_ID_0000000000000000000000000000")
    response = await env.fake.send(headers, body)
    assert response.status_code == 401
    assert await env.shop.store.order_payment(order.id) is None


async def test_wrong_amount_is_held_for_review_and_delivers_nothing(env):
    order = await _prepaid(env)
    tx = env.fake.pay(order.ref, "o-buyer-1", amount=1)
    response = await env.fake.send(*env.fake.notification("TRANSACTION.SUCCESS", tx))
    assert response.status_code == 204  # recorded: the money moved, the merchant decides
    await env.shop.delivery.drain()
    assert (await env.order(order)).state == OrderState.REVIEW
    assert await env.shop.store.order_items(order.id) == []
    assert env.channel.sent == []


async def test_wrong_currency_is_held_for_review(env):
    order = await _prepaid(env)
    tx = env.fake.pay(order.ref, "o-buyer-1")
    tx["amount"]["currency"] = "USD"
    response = await env.fake.send(*env.fake.notification("TRANSACTION.SUCCESS", tx))
    assert response.status_code == 204
    assert (await env.order(order)).state == OrderState.REVIEW


@pytest.mark.parametrize("trade_state", ["NOTPAY", "CLOSED", "PAYERROR", "USERPAYING"])
async def test_trade_state_other_than_success_does_not_pay(env, trade_state):
    order = await _prepaid(env)
    tx = env.fake.pay(order.ref, "o-buyer-1", state=trade_state)
    tx["transaction_id"] = "4200000000000000000000000001"
    response = await env.fake.send(*env.fake.notification("TRANSACTION.SUCCESS", tx))
    assert response.status_code == 204
    assert (await env.order(order)).state == OrderState.AWAITING_PAYMENT
    assert await env.shop.store.order_payment(order.id) is None
    from risk.limiters import Count

    failed = await env.shop.risk.limiter.apply([Count("f:failed_payments_hour:wechat:o-buyer-1", 3600, 0)],
                                               time.time(), commit=False)
    assert failed.values == ((1,) if trade_state == "PAYERROR" else (0,))  # a payment error is a risk signal


async def test_notification_for_unknown_order_is_404_and_changes_nothing(env):
    tx = env.fake.pay("KNOSUCHORDER1", "o-buyer-1", amount=1000)
    response = await env.fake.send(*env.fake.notification("TRANSACTION.SUCCESS", tx))
    assert response.status_code == 404
    assert response.json() == {"code": "FAIL", "message": "unknown order"}
    assert await env.shop.store.pending_outbox() == 0


@pytest.mark.parametrize(("field", "value"), [("mchid", "1900000999"), ("appid", "wx0000000000000000")])
async def test_wrong_mchid_or_appid_is_rejected(env, field, value):
    order = await _prepaid(env)
    tx = env.fake.pay(order.ref, "o-buyer-1")
    tx[field] = value
    response = await env.fake.send(*env.fake.notification("TRANSACTION.SUCCESS", tx))
    assert response.status_code == 400
    assert response.json()["code"] == "FAIL"
    assert (await env.order(order)).state == OrderState.AWAITING_PAYMENT
    assert await env.shop.store.order_payment(order.id) is None


async def test_duplicate_transaction_id_delivers_once_even_concurrently(env):
    order = await _prepaid(env)
    tx = env.fake.pay(order.ref, "o-buyer-1")
    notes = [env.fake.notification("TRANSACTION.SUCCESS", tx) for _ in range(5)]  # five nonces, one payment
    responses = await asyncio.gather(*(env.fake.send(h, b) for h, b in notes))
    assert [r.status_code for r in responses] == [204] * 5
    await env.shop.delivery.drain()
    assert len(env.channel.sent) == 1
    assert len(await env.shop.store.order_items(order.id)) == 1
    assert (await env.order(order)).state == OrderState.DELIVERED


@pytest.mark.parametrize("body", [b"not json", b"{}", b'{"resource_type":"encrypt-resource","resource":{}}',
                                  json.dumps({"resource_type": "encrypt-resource", "event_type": "X", "resource": {
                                      "algorithm": "AEAD_AES_256_GCM", "nonce": "abcdefabcdef",
                                      "ciphertext": "AAAA", "associated_data": "transaction"}}).encode()])
async def test_signed_but_malformed_or_undecryptable_body_is_400(env, body):
    headers = env.fake.sign_headers(body.decode()) | {"Content-Type": "application/json"}
    response = await env.fake.send(headers, body)
    assert response.status_code == 400
    assert response.json()["code"] == "FAIL"


async def test_oversized_body_is_413(env):
    body = b"{" + b" " * (64 * 1024) + b"}"
    headers = env.fake.sign_headers(body.decode())
    response = await env.fake.send(headers, body)
    assert response.status_code == 413
    assert response.json()["code"] == "FAIL"


async def test_missing_signature_headers_are_401(env):
    response = await env.fake.send({"Content-Type": "application/json"}, b"{}")
    assert response.status_code == 401
