"""Both WeChat Pay key modes end to end: a notification signed with the platform certificate's key and serial
is accepted in certificate mode; a key the shop does not hold is refused in either."""

from __future__ import annotations

from storage.records import OrderState
from tests.wechatpay.conftest import PUB_KEY_ID, bench


async def test_certificate_mode_pays_an_order_end_to_end(store, tmp_path, keys):
    async with bench(store, tmp_path, keys, mode="certificate") as env:
        order = await env.checkout()
        page = await env.get(env.link(order))  # the prepay response is verified with the certificate
        assert page.status_code == 200
        response = await env.fake.notify_paid(order.ref)
        assert response.status_code == 204
        assert (await env.order(order)).state == OrderState.DELIVERING


async def test_certificate_mode_refuses_a_public_key_id_it_does_not_hold(store, tmp_path, keys):
    async with bench(store, tmp_path, keys, mode="certificate") as env:
        order = await env.checkout()
        await env.get(env.link(order))
        tx = env.fake.pay(order.ref)
        response = await env.fake.send(*env.fake.notification("TRANSACTION.SUCCESS", tx, serial=PUB_KEY_ID))
        assert response.status_code == 401
        assert (await env.order(order)).state == OrderState.AWAITING_PAYMENT


async def test_public_key_mode_refuses_a_certificate_serial(env):
    order = await env.checkout()
    await env.get(env.link(order))
    tx = env.fake.pay(order.ref)
    response = await env.fake.send(*env.fake.notification("TRANSACTION.SUCCESS", tx, serial=env.keys.cert_serial))
    assert response.status_code == 401
    assert (await env.order(order)).state == OrderState.AWAITING_PAYMENT


async def test_public_key_mode_pays_an_order_end_to_end(env):
    order = await env.checkout()
    await env.get(env.link(order))
    assert (await env.fake.notify_paid(order.ref)).status_code == 204
    assert (await env.order(order)).state == OrderState.DELIVERING
