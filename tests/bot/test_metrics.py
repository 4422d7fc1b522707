"""GET /metrics: a purchase moves the counters, the histogram and the gauges; no label is an order ref or a code;
the bearer token is enforced when configured; two shops in one process keep their own registries."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from bot.jobs import JobStatus, run_jobs
from bot.server import create_app
from fulfillment.delivery import Delivery
from fulfillment.orders import CheckoutRequest
from tests.storage.seed import make_shop, new_order

REF = re.compile(r"^K[0-9A-Z]{11}$")


class Inbox:
    def __init__(self) -> None:
        self.got: list[Delivery] = []

    async def deliver(self, delivery: Delivery) -> None:
        self.got.append(delivery)


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def _scrape(client: httpx.AsyncClient, **headers: str) -> httpx.Response:
    return await client.get("/metrics", headers=headers)


async def test_a_purchase_moves_the_metrics_and_no_label_names_an_order_or_a_code(shop):
    seeded = await make_shop(shop.store, codes=3, vault=shop.vault)
    inbox = shop.channels["console"] = Inbox()
    status = JobStatus()
    app = create_app(shop, status)

    async def show(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app.router.routes.append(Route("/orders/{ref}", show))  # added after create_app, as serve() adds its routes
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://kamibot") as client:
        before = _samples((await _scrape(client)).text)
        order = await shop.orders.checkout(CheckoutRequest("console", "buyer-7", "buyer-7", seeded.sku.id, 1))
        await shop.payments.receive(shop.providers["test"].pay(order))
        stop = asyncio.Event()

        async def broken() -> int:
            raise RuntimeError("boom")

        task = asyncio.create_task(run_jobs(shop, stop, status, delivery_every=0.05, expire_every=0.05,
                                            recover_every=0.05, extra=[("broken", 0.05, broken)]))
        for _ in range(200):
            if inbox.got and status.failures.get("broken"):
                break
            await asyncio.sleep(0.05)
        stop.set()
        await task
        assert len(inbox.got) == 1
        await client.get("/pay/wechat/" + order.ref)  # no such route here: counted as unmatched, not by path
        assert (await client.get("/orders/" + order.ref)).status_code == 200
        response = await _scrape(client)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    after = _samples(text)

    assert _value(after, "kamibot_payment_notifications_total", provider="test", outcome="allocated") == \
        _value(before, "kamibot_payment_notifications_total", provider="test", outcome="allocated") + 1
    assert _value(after, "kamibot_paid_to_delivered_seconds_count") == 1
    assert 0 <= _value(after, "kamibot_paid_to_delivered_seconds_sum") < 10
    assert _value(after, "kamibot_orders", channel="console", state="delivered") == 1
    assert _value(after, "kamibot_outbox_pending") == 0
    assert _value(after, "kamibot_job_runs_total", job="delivery") >= 1
    assert _value(after, "kamibot_job_failures_total", job="broken") >= 1
    assert _value(after, "kamibot_job_failures_total", job="delivery") == 0
    # the first scrape was timed: by its route template, method and status
    assert _value(after, "kamibot_http_request_duration_seconds_count", method="GET", route="/metrics",
                  status="200") >= 1
    assert _value(after, "kamibot_http_request_duration_seconds_count", method="GET", route="unmatched",
                  status="404") == 1
    assert _value(after, "kamibot_http_request_duration_seconds_count", method="GET", route="/orders/{ref}",
                  status="200") == 1

    label_values = {value for (_, labels) in after for _, value in labels}
    assert not any(REF.match(v) for v in label_values), label_values
    assert order.ref not in text
    assert "buyer-7" not in text
    for code in inbox.got[0].codes:
        assert code not in text
    assert all(name.startswith("kamibot_") for name, _ in after if not name.startswith(("python_", "process_")))


async def test_outbox_pending_and_orders_are_read_from_the_store(shop):
    seeded = await make_shop(shop.store, codes=2, vault=shop.vault)
    order = await shop.store.reserve(new_order(seeded.sku), datetime.now(UTC))
    await shop.payments.receive(shop.providers["test"].pay(order))  # paid, its delivery row not sent yet
    transport = httpx.ASGITransport(app=create_app(shop, JobStatus()))
    async with httpx.AsyncClient(transport=transport, base_url="http://kamibot") as client:
        samples = _samples((await _scrape(client)).text)
    assert _value(samples, "kamibot_outbox_pending") == 1
    assert _value(samples, "kamibot_orders", channel="console", state="paid") + \
        _value(samples, "kamibot_orders", channel="console", state="delivering") == 1
    assert _value(samples, "kamibot_paid_to_delivered_seconds_count") == 0


@pytest.mark.parametrize(("header", "allowed"), [
    (None, False), ("", False), ("Bearer wrong", False), ("m3trics-t0ken", False), ("Bearer m3trics-t0ken ", False),
    ("Basic m3trics-t0ken", False), ("Bearer m3trics-t0ken", True),
])
async def test_the_metrics_token_is_required_when_set(shop, header, allowed):
    shop.settings.metrics_token = SecretStr("m3trics-t0ken")
    transport = httpx.ASGITransport(app=create_app(shop, JobStatus()))
    async with httpx.AsyncClient(transport=transport, base_url="http://kamibot") as client:
        response = await _scrape(client, **({"Authorization": header} if header is not None else {}))
    assert response.status_code == (200 if allowed else 401)
    if not allowed:
        assert "kamibot_" not in response.text
        assert "m3trics-t0ken" not in response.text


async def test_two_shops_in_one_process_keep_their_own_registries(shop, tmp_path):
    from bot.composition import build_shop
    from tests.fulfillment.conftest import settings_for

    (tmp_path / "other").mkdir()
    other = await build_shop(settings_for(tmp_path / "other"))
    try:
        seeded = await make_shop(shop.store, codes=2, vault=shop.vault)
        apps = [create_app(shop, JobStatus()), create_app(other, JobStatus())]
        order = await shop.store.reserve(new_order(seeded.sku), datetime.now(UTC))
        await shop.payments.receive(shop.providers["test"].pay(order))
        texts = []
        for app in apps:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://kamibot") as client:
                texts.append(_samples((await _scrape(client)).text))
        assert _value(texts[0], "kamibot_payment_notifications_total", provider="test", outcome="allocated") == 1
        assert _value(texts[1], "kamibot_payment_notifications_total", provider="test", outcome="allocated") == 0
    finally:
        await other.close()


async def test_order_state_counts_on_both_backends(store):
    seeded = await make_shop(store, codes=3)
    now = datetime.now(UTC)
    for user in ("a", "b"):
        await store.reserve(new_order(seeded.sku, user=user), now)
    await store.reserve(new_order(seeded.sku, user="c", channel="telegram"), now)
    counts = sorted(await store.order_state_counts())
    assert counts == [("console", "reserved", 2), ("telegram", "reserved", 1)]
