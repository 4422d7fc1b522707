"""A console chat on a real SQLite shop: the same conversation code Telegram and WeChat will use."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bot.composition import Shop, build_shop
from bot.demo import CUSTOMER_ID, MERCHANT_ID, make_context, seed_demo
from handlers.console.adapter import CHANNEL, ConsoleChannel, ConsoleChat
from handlers.router import Conversation
from tests.fulfillment.conftest import settings_for


@dataclass
class Transcript:
    lines: list[str] = field(default_factory=list)

    def write(self, line: str) -> None:
        self.lines.append(line)

    def text(self) -> str:
        return "\n".join(self.lines)

    def clear(self) -> None:
        self.lines.clear()


@dataclass
class DemoShop:
    shop: Shop
    out: Transcript
    customer: ConsoleChat
    merchant: ConsoleChat
    stranger: ConsoleChat


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[DemoShop]:
    shop = await build_shop(settings_for(tmp_path))
    await seed_demo(shop)
    ctx = make_context(shop, {MERCHANT_ID})
    out = Transcript()
    files = tmp_path / "deliveries"
    shop.channels[CHANNEL] = ConsoleChannel(ctx, out.write, files)
    conv = Conversation(ctx)
    provider = shop.providers["test"]

    def chat(user: str, lang: str) -> ConsoleChat:
        return ConsoleChat(ctx, conv, provider, user, out.write, files, lang)  # type: ignore[arg-type]

    yield DemoShop(shop, out, chat(CUSTOMER_ID, "en"), chat(MERCHANT_ID, "en"), chat("stranger", "zh_CN"))
    await shop.close()
