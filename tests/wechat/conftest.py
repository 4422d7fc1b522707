"""A shop with the WeChat channel on a real store, its Starlette app driven over httpx, and the fake WeChat API."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from defusedxml.ElementTree import fromstring

from bot.composition import Shop, build_context, build_shop
from bot.demo import seed_demo
from bot.jobs import JobStatus
from bot.server import create_app
from bot.settings import Settings, WeChatSettings
from bot.wechat import WeChatRuntime, build_wechat
from handlers.context import ShopContext
from tests.fakes.wechat_api import (
    AES_KEY,
    APP_ID,
    APP_SECRET,
    TOKEN,
    Callback,
    FakeWeChat,
    callback,
    message_xml,
    open_reply,
)

CUSTOMER, OTHER, ADMIN = "oCustomer000000000000000001", "oOther00000000000000000002", "oAdmin00000000000000000009"


@dataclass
class Harness:
    shop: Shop
    ctx: ShopContext
    runtime: WeChatRuntime
    fake: FakeWeChat
    client: httpx.AsyncClient

    async def post(self, cb: Callback) -> httpx.Response:
        return await self.client.post("/wechat", params=cb.params, content=cb.body)

    async def push(self, xml: str, safe: bool = False) -> str:
        """WeChat pushes one message; returns the passive reply's text ("" for `success`)."""
        cb = callback(xml, safe=safe)
        response = await self.post(cb)
        assert response.status_code == 200, response.status_code
        return reply_text(response.text, safe)

    async def say(self, openid: str, text: str, safe: bool = False) -> str:
        return await self.push(message_xml(openid, text), safe)

    async def event(self, openid: str, event: str, key: str = "") -> str:
        return await self.push(message_xml(openid, msg_type="event", event=event, event_key=key))

    async def settle(self) -> None:
        """Wait for answers and extra messages still being sent in the background."""
        while self.ctx.background:
            await asyncio.gather(*list(self.ctx.background), return_exceptions=True)


def reply_text(body: str, safe: bool = False) -> str:
    if body == "success" or not body:
        return ""
    xml = open_reply(body) if safe else body
    root = fromstring(xml)
    assert root.findtext("MsgType") == "text"
    return root.findtext("Content") or ""


def wechat_settings(fake: FakeWeChat, aes: bool = True) -> WeChatSettings:
    return WeChatSettings(app_id=APP_ID, app_secret=APP_SECRET, token=TOKEN, encoding_aes_key=AES_KEY if aes else "",
                          admin_openids=[ADMIN], api_base_url=fake.base_url)


# the passive-reply budget is raised so a loaded test machine (or the FAQ matcher loading its dictionary on the
# first message) does not turn a passive reply into a customer-service message; test_passive lowers it on purpose
@contextlib.asynccontextmanager
async def running(tmp_path: Path, fake: FakeWeChat, database_url: str = "", budget_s: float = 30.0,
                  seed: bool = True, **build: object) -> AsyncIterator[Harness]:
    settings = Settings(data_dir=tmp_path, database_url=database_url or f"sqlite:///{tmp_path / 'shop.db'}",
                        wechat=wechat_settings(fake), default_language="en")
    shop = await build_shop(settings)
    if seed:
        await seed_demo(shop)
    ctx = build_context(shop)
    runtime = build_wechat(shop, ctx, passive_budget_s=budget_s, **build)  # type: ignore[arg-type]
    app = create_app(shop, JobStatus(), wechat_routes=runtime.routes())
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://kamibot.test")
    harness = Harness(shop, ctx, runtime, fake, client)
    try:
        yield harness
    finally:
        await harness.settle()
        await client.aclose()
        await runtime.stop()
        await shop.close()


@pytest.fixture
async def fake() -> AsyncIterator[FakeWeChat]:
    server = FakeWeChat()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def wx(tmp_path: Path, fake: FakeWeChat) -> AsyncIterator[Harness]:
    async with running(tmp_path, fake) as harness:
        yield harness
