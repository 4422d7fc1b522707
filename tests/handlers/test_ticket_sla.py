"""The ticket SLA reminder job on the console demo shop, with a fixed clock (real SQLite)."""

from __future__ import annotations

import re
from datetime import timedelta

from bot.demo import CUSTOMER_ID, MERCHANT_ID
from bot.jobs import ticket_sla_job
from handlers.ticket_sla import remind_overdue
from tests.fulfillment.conftest import settings_for
from tests.handlers.test_aftersales import _relay

TICKET = re.compile(r"ticket #(\d+)")
SLA = timedelta(minutes=30)


def _reminders(demo) -> list[str]:
    return [line for line in demo.out.lines if line.startswith(f"[to {MERCHANT_ID}] ⏰")]


async def test_an_unanswered_ticket_reminds_the_merchants_once_per_sla_period(demo):
    _relay(demo)
    ctx = demo.customer.ctx
    await demo.customer.say("I need to talk to a person please")
    number = int(TICKET.search(demo.out.text()).group(1))
    opened = (await demo.shop.store.ticket_by_id(number)).updated_at
    demo.out.clear()
    assert await remind_overdue(ctx, SLA, opened + timedelta(minutes=29)) == 0
    assert _reminders(demo) == []
    assert await remind_overdue(ctx, SLA, opened + timedelta(minutes=31)) == 1
    [reminder] = _reminders(demo)
    assert f"Ticket #{number} (talk to a person) from console:{CUSTOMER_ID} has waited 31 min without an answer" \
        in reminder
    assert f"/reply {number} TEXT" in reminder
    # the same period: no second reminder, also not from another process's job (the claim is in the store)
    assert await remind_overdue(ctx, SLA, opened + timedelta(minutes=45)) == 0
    assert await remind_overdue(ctx, SLA, opened + timedelta(minutes=59)) == 0
    assert len(_reminders(demo)) == 1
    # the next period reminds again
    assert await remind_overdue(ctx, SLA, opened + timedelta(minutes=61)) == 1
    assert "has waited 61 min" in _reminders(demo)[-1]
    # answered: no more reminders
    await demo.merchant.say(f"/reply {number} looking into it")
    assert (await demo.shop.store.ticket_by_id(number)).state == "answered"
    demo.out.clear()
    assert await remind_overdue(ctx, SLA, opened + timedelta(hours=5)) == 0
    assert _reminders(demo) == []


async def test_closed_tickets_and_a_chinese_merchant(demo):
    _relay(demo)
    ctx = demo.customer.ctx
    ctx.languages[("console", MERCHANT_ID)] = "zh_CN"
    await demo.customer.say("talk to a human")
    first = int(TICKET.search(demo.out.text()).group(1))
    await demo.stranger.say("人工客服")
    second = int(re.search(r"#(\d+)", demo.out.lines[-1]).group(1))
    assert second != first
    await demo.merchant.say(f"/close {first}")
    opened = (await demo.shop.store.ticket_by_id(second)).updated_at
    demo.out.clear()
    assert await remind_overdue(ctx, SLA, opened + timedelta(minutes=40)) == 1
    [reminder] = _reminders(demo)
    assert f"工单 #{second}" in reminder
    assert "已等待 40 分钟未回复" in reminder
    assert f"#{first}" not in reminder


def test_the_job_uses_the_configured_sla(tmp_path, monkeypatch):
    monkeypatch.setenv("KAMIBOT_AFTERSALES__SLA_MINUTES", "45")
    monkeypatch.setenv("KAMIBOT_AFTERSALES__SLA_CHECK_SECONDS", "20")
    settings = settings_for(tmp_path)
    assert settings.aftersales.sla_minutes == 45
    name, every, _ = ticket_sla_job(None, settings)  # type: ignore[arg-type]
    assert (name, every) == ("ticket_sla", 20)


def test_notices_and_reminders_name_their_ticket_for_a_chat_reply():
    from handlers.tickets_admin import ticket_of_notice
    from locales import Translator

    tr = Translator()
    for lang in ("en", "zh_CN"):
        params = {"ticket": 42, "kind": "x", "user": "telegram:1", "order": "", "text": "Ticket #7", "minutes": 31}
        assert ticket_of_notice(tr(lang, "ticket.notice", **params)) == 42
        assert ticket_of_notice(tr(lang, "ticket.sla_reminder", **params)) == 42
        assert ticket_of_notice(tr(lang, "ticket.reply_to_customer", ticket=42, text="hi")) is None
    assert ticket_of_notice("Welcome to the shop!") is None


async def test_the_job_ticks_under_run_jobs(demo, tmp_path):
    import asyncio

    from bot.jobs import JobStatus, run_jobs

    settings = settings_for(tmp_path, aftersales={"sla_minutes": 30, "sla_check_seconds": 0.05})
    stop, status = asyncio.Event(), JobStatus()
    task = asyncio.create_task(run_jobs(demo.shop, stop, status, extra=[ticket_sla_job(demo.customer.ctx, settings)]))
    try:
        for _ in range(200):
            if "ticket_sla" in status.last_ok:
                break
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await task
    assert "ticket_sla" in status.last_ok
    assert status.failures.get("ticket_sla", 0) == 0
