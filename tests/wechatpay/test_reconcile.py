"""The reconciliation job: asks WeChat Pay about orders whose notification never came, closes expired ones."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from bot.jobs import JobStatus, run_jobs
from storage.records import OrderState


async def _prepaid(env, openid="o-buyer-1"):
    order = await env.checkout(openid)
    assert (await env.get(env.link(order, openid))).status_code == 200
    return order


async def test_lost_notification_is_applied_by_the_job(env):
    order = await _prepaid(env)
    env.fake.pay(order.ref, "o-buyer-1")  # paid, but the notification never reaches us
    assert await env.wx.reconciler.run_once() == 1
    assert (await env.order(order)).state == OrderState.DELIVERING
    await env.shop.delivery.drain()
    assert [d.order.id for d in env.channel.sent] == [order.id]
    assert await env.wx.watch.refs() == {}
    # the notification arriving late now changes nothing
    assert (await env.fake.send(*env.fake.notification(
        "TRANSACTION.SUCCESS", env.fake.transactions[order.ref]))).status_code == 204
    await env.shop.delivery.drain()
    assert len(env.channel.sent) == 1


async def test_expired_unpaid_order_is_closed(env):
    order = await _prepaid(env)
    env.shop.orders.clock = lambda: order.expires_at + timedelta(seconds=1)
    await env.shop.orders.expire_due()
    assert await env.wx.reconciler.run_once() == 1
    assert env.fake.transactions[order.ref]["trade_state"] == "CLOSED"
    assert ("POST", f"/v3/pay/transactions/out-trade-no/{order.ref}-N/close") in env.fake.calls
    assert (await env.order(order)).state == OrderState.EXPIRED
    assert await env.wx.watch.refs() == {}


async def test_unpaid_live_order_stays_watched_and_open(env):
    order = await _prepaid(env)
    assert await env.wx.reconciler.run_once() == 0
    assert env.fake.transactions[order.ref]["trade_state"] == "NOTPAY"
    assert set(await env.wx.watch.refs()) == {order.ref + "-N"}  # its Native trade number


async def test_payment_made_just_before_expiry_is_honoured_not_closed(env):
    order = await _prepaid(env)
    env.fake.pay(order.ref, "o-buyer-1")
    env.shop.orders.clock = lambda: order.expires_at + timedelta(seconds=1)
    await env.shop.orders.expire_due()
    assert await env.wx.reconciler.run_once() == 1
    assert env.fake.transactions[order.ref]["trade_state"] == "SUCCESS"
    assert (await env.order(order)).state == OrderState.DELIVERING


async def test_only_one_process_reconciles_at_a_time(env):
    order = await _prepaid(env)
    env.fake.pay(order.ref, "o-buyer-1")
    now = env.wx.clock()
    assert await env.shop.store.try_lease("wechatpay.reconcile", "other-process", now + timedelta(minutes=1), now)
    assert await env.wx.reconciler.run_once() == 0
    assert (await env.order(order)).state == OrderState.AWAITING_PAYMENT
    await env.shop.store.release_lease("wechatpay.reconcile", "other-process")
    assert await env.wx.reconciler.run_once() == 1


async def test_job_runs_inside_the_background_jobs(env):
    order = await _prepaid(env)
    env.fake.pay(order.ref, "o-buyer-1")
    name, every, tick = env.wx.job()
    stop, status = asyncio.Event(), JobStatus()
    task = asyncio.create_task(run_jobs(env.shop, stop, status, delivery_every=0.05, extra=[(name, 0.05, tick)]))
    for _ in range(200):
        if env.channel.sent:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await task
    assert name == "wechatpay_reconcile"
    assert every == 60
    assert [d.order.id for d in env.channel.sent] == [order.id]
    assert name in status.last_ok
    assert status.failures == {}


async def test_watch_list_updates_from_many_pages_at_once_lose_nothing(env):
    orders = [await env.checkout(f"o-{i}") for i in range(8)]
    pages = await asyncio.gather(*(env.get(env.link(o, f"o-{i}")) for i, o in enumerate(orders)))
    assert [p.status_code for p in pages] == [200] * 8
    assert set(await env.wx.watch.refs()) == {o.ref + "-N" for o in orders}


async def test_long_watch_list_is_worked_through_in_turns(env):
    unpaid = [await _prepaid(env, f"o-{i}") for i in range(4)]
    paid = await _prepaid(env, "o-payer")
    env.fake.pay(paid.ref, "o-payer")
    env.wx.reconciler.batch = 2
    for _ in range(3):
        await env.wx.reconciler.run_once()
    assert (await env.order(paid)).state == OrderState.DELIVERING
    assert set(await env.wx.watch.refs()) == {o.ref + "-N" for o in unpaid}


async def test_job_and_notification_racing_for_one_payment_deliver_once(env):
    order = await _prepaid(env)
    headers, body = env.fake.notification("TRANSACTION.SUCCESS", env.fake.pay(order.ref, "o-buyer-1"))
    answered, _ = await asyncio.gather(env.fake.send(headers, body), env.wx.reconciler.run_once())
    assert answered.status_code == 204
    await env.shop.delivery.drain()
    assert [d.order.id for d in env.channel.sent] == [order.id]
    assert len(await env.shop.store.order_items(order.id)) == 1
