"""Telegram updates on arrival (handlers/telegram/intake.py): flood control before any lock or place, one
user's updates in order, and a user's queued updates never hold a place someone else needs."""

from __future__ import annotations

import asyncio
from typing import Any

from telegram import Update

from bot.demo import make_context
from handlers.flood import FloodGate
from handlers.telegram.intake import ArrivalCheck, UpdateIntake
from handlers.types import Reply

_ids = iter(range(1, 1_000_000))


def _user(user_id: int) -> dict[str, Any]:
    return {"id": user_id, "is_bot": False, "first_name": f"U{user_id}", "language_code": "en"}


def text(user_id: int, body: str = "/start") -> Update:
    return Update.de_json({"update_id": next(_ids), "message": {
        "message_id": next(_ids), "date": 0, "chat": {"id": user_id, "type": "private"}, "from": _user(user_id),
        "text": body}}, None)


def press(user_id: int, data: str = "shop") -> Update:
    return Update.de_json({"update_id": next(_ids), "callback_query": {
        "id": f"cb{next(_ids)}", "from": _user(user_id), "chat_instance": "1", "data": data}}, None)


def paid(user_id: int) -> Update:
    payment = {"currency": "XTR", "total_amount": 45, "invoice_payload": "K1", "telegram_payment_charge_id": "c",
               "provider_payment_charge_id": ""}
    return Update.de_json({"update_id": next(_ids), "message": {
        "message_id": next(_ids), "date": 0, "chat": {"id": user_id, "type": "private"}, "from": _user(user_id),
        "successful_payment": payment}}, None)


async def test_a_users_queued_updates_hold_no_place_another_user_needs():
    intake = UpdateIntake(max_concurrent_updates=2)
    release, done = asyncio.Event(), []

    async def handle(name: str, block: bool = False) -> None:
        if block:
            await release.wait()
        done.append(name)

    flooder = [asyncio.create_task(intake.process_update(text(1), handle("a1", block=True)))]
    flooder += [asyncio.create_task(intake.process_update(text(1), handle(f"a{n}"))) for n in range(2, 10)]
    await asyncio.sleep(0.01)
    await asyncio.wait_for(intake.process_update(text(2), handle("b1")), 1.0)  # not behind user 1's queue
    assert done == ["b1"]
    release.set()
    await asyncio.gather(*flooder)
    assert done == ["b1", *(f"a{n}" for n in range(1, 10))]  # user 1's in arrival order


def pre_checkout(user_id: int) -> Update:
    return Update.de_json({"update_id": next(_ids), "pre_checkout_query": {
        "id": f"pc{next(_ids)}", "from": _user(user_id), "currency": "XTR", "total_amount": 45,
        "invoice_payload": "K1"}}, None)


async def test_a_pre_checkout_query_is_not_queued_behind_the_payers_own_updates():
    """Telegram waits 10 s for the answer; the payer's earlier updates may be waiting for the per-chat pace."""
    intake = UpdateIntake()
    release, done = asyncio.Event(), []

    async def handle(name: str, block: bool = False) -> None:
        if block:
            await release.wait()
        done.append(name)

    busy = asyncio.create_task(intake.process_update(text(1), handle("earlier", block=True)))
    await asyncio.sleep(0.01)
    await asyncio.wait_for(intake.process_update(pre_checkout(1), handle("pre_checkout")), 1.0)
    release.set()
    await busy
    assert done == ["pre_checkout", "earlier"]


async def test_an_update_over_the_limit_is_dropped_at_once_not_queued():
    intake = UpdateIntake(max_concurrent_updates=4)
    release, done = asyncio.Event(), []

    async def gate(update: Update) -> bool:
        return update.message is None or update.message.text != "drop"

    async def handle(name: str, block: bool = False) -> None:
        if block:
            await release.wait()
        done.append(name)

    intake.gate = gate
    busy = asyncio.create_task(intake.process_update(text(1), handle("first", block=True)))
    await asyncio.sleep(0.01)
    await asyncio.wait_for(intake.process_update(text(1, "drop"), handle("dropped")), 1.0)  # no wait for the lock
    release.set()
    await busy
    assert done == ["first"]


async def test_a_failing_gate_lets_the_update_through():
    intake = UpdateIntake()

    async def gate(update: Update) -> bool:
        raise ConnectionError("limiter down")

    done = []

    async def handle() -> None:
        done.append(1)

    intake.gate = gate
    await intake.process_update(text(1), handle())
    assert done == [1]


class Sender:
    """The two calls ArrivalCheck makes of TelegramSender, recorded."""

    def __init__(self) -> None:
        self.answered: list[str] = []
        self.sent: list[tuple[str, str]] = []

    async def answer_button(self, query_id: str) -> None:
        self.answered.append(query_id)

    async def send(self, chat_id: str, reply: Reply) -> None:
        self.sent.append((chat_id, reply.text))


async def test_every_press_is_answered_and_a_flood_is_dropped_with_one_notice_payments_never(demo):
    ctx = make_context(demo.shop, set())
    sender = Sender()
    check = ArrivalCheck(ctx, sender, FloodGate(ctx))  # type: ignore[arg-type]
    updates = [press(7) if n % 2 else text(7) for n in range(60)]
    admitted = [await check(u) for u in updates]
    await asyncio.sleep(0.01)  # the admitted presses' answers run beside their handling
    assert admitted == [True] * 20 + [False] * 40  # the default chat_burst: 20, messages and presses alike
    assert sorted(sender.answered) == sorted(u.callback_query.id for u in updates if u.callback_query)
    assert [chat for chat, _ in sender.sent] == ["7"]
    assert "too fast" in sender.sent[0][1]
    assert await check(paid(7))  # a payment is never dropped
