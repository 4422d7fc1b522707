"""Merchant reconciliation in chat: /reconcile runs a source for a day, each new discrepancy is told to every
merchant once (in their language), /discrepancies lists, /discrepancy ID resolve NOTE closes with a note; every
command is audited, strangers are not told the commands exist, bad dates get a clear answer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.composition import build_context, build_shop
from bot.reconcile_cli import HttpBotApi
from fulfillment.reconcile_stars import StarTransactions
from handlers.reconcile_admin import report_new
from handlers.router import Conversation
from handlers.types import Incoming, Reply
from tests.fakes.telegram_bot_api import FakeTelegram
from tests.fulfillment.conftest import settings_for
from tests.reconcile.conftest import tomorrow
from tests.reconcile.test_reconcile_stars import _today


@pytest.fixture
async def chat(store, tmp_path: Path) -> AsyncIterator[tuple]:
    fake = FakeTelegram()
    await fake.start()
    shop = await build_shop(settings_for(tmp_path), store=store)
    ctx = build_context(shop, {"console": {"m1", "m2"}})
    sent: list[tuple[str, str]] = []

    async def send(chat_id: str, reply: Reply) -> None:
        sent.append((chat_id, reply.text))

    ctx.senders["console"] = send
    api = HttpBotApi(fake.base_url, fake.token)
    ctx.reconcile.clock = tomorrow
    ctx.reconcile.add("telegram", StarTransactions(shop.store, api).collect)
    yield ctx, Conversation(ctx), fake, sent
    await api.aclose()
    await shop.close()
    await fake.stop()


async def _say(conv, user: str, text: str) -> str:
    return "\n".join(r.text for r in await conv.handle(Incoming("console", user, user, text, language="en")))


async def _settle(ctx) -> None:
    for task in list(ctx.background):
        await task


async def test_reconcile_report_once_list_and_resolve_in_chat(chat):
    ctx, conv, fake, sent = chat
    fake.successful_payment(7, "NOT-OURS", 70, "ch-unknown", lost=True)
    await ctx.choose_language("console", "m1", "m1", "en")
    await ctx.choose_language("console", "m2", "m2", "zh_CN")
    assert "/reconcile wechatpay|telegram|supplier NAME" in await _say(conv, "m1", "/reconcile")
    assert await _say(conv, "stranger", f"/reconcile telegram {_today()}") == ctx.tr("en", "error.unknown_command")

    answer = await _say(conv, "m1", f"/reconcile telegram {_today()}")
    await _settle(ctx)

    assert answer == ctx.tr("en", "reconcile.summary", source="telegram", day=str(_today()), checked=1, found=1,
                            new=1, fees=0)
    assert [who for who, _ in sent] == ["m1", "m2"]  # every merchant, once
    assert "ch-unknown" in sent[0][1]
    assert "paid but unknown to the shop" in sent[0][1]
    assert "已付款但本店无记录" in sent[1][1]  # m2 reads Chinese
    assert await report_new(ctx) == 0  # told once: a later pass (the job, another process) tells nobody again
    await _say(conv, "m1", f"/reconcile telegram {_today()}")  # found again: not new, not told again
    await _settle(ctx)
    assert len(sent) == 2

    listed = await _say(conv, "m1", "/discrepancies")
    assert listed.startswith("#")
    assert "ch-unknown" in listed
    did = int(listed[1:].split(" ", 1)[0])
    assert await _say(conv, "m1", f"/discrepancy {did} resolve") == ctx.tr("en", "reconcile.help", sources="telegram")
    assert await _say(conv, "m1", f"/discrepancy {did} resolve refunded by hand") == ctx.tr(
        "en", "reconcile.resolved", id=did)
    assert await _say(conv, "m1", f"/discrepancy {did} resolve again") == ctx.tr(
        "en", "reconcile.already_resolved", id=did)
    assert await _say(conv, "m1", "/discrepancies") == ctx.tr("en", "reconcile.none")
    assert "[resolved: refunded by hand]" in await _say(conv, "m1", "/discrepancies all")
    actions = [e[3] for e in await ctx.reconcile.store.audit_entries(50)]
    for action in ("reconcile", "discrepancies", "discrepancy", "discrepancy_resolve"):
        assert action in actions


async def test_bad_requests_get_a_clear_answer_and_record_nothing(chat):
    ctx, conv, fake, sent = chat
    fake.successful_payment(7, "NOT-OURS", 70, "ch-unknown", lost=True)
    assert await _say(conv, "m1", "/reconcile telegram 2099-01-01") == ctx.tr(
        "en", "reconcile.future_date", date="2099-01-01")
    assert await _say(conv, "m1", "/reconcile telegram 2026-13-01") == ctx.tr(
        "en", "reconcile.bad_date", date="2026-13-01")
    assert await _say(conv, "m1", "/reconcile wechatpay") == ctx.tr("en", "reconcile.unknown_source",
                                                                    source="wechatpay")
    assert await _say(conv, "m1", "/discrepancy 999 resolve nobody") == ctx.tr(
        "en", "reconcile.unknown_discrepancy", id=999)
    assert await ctx.reconcile.store.discrepancies(True, 10) == []
    assert sent == []
