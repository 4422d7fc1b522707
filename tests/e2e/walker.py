"""A buyer who walks the Telegram menus by their buttons, as a person would: `/start`, then at each step the
first button that leads on (not Back, My orders, Help, Contact, Language), until the invoice; then pays.

It reads only what a Telegram client would show (the fake Bot API's memory of each message after its edits)
and records when each answer arrived, how many new messages and how many edits it saw. Used by the end-to-end
tests (tests/e2e/test_telegram_flow.py) and by benchmarks/telegram_walk.py.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.telegram_bot_api import FakeTelegram

#: buttons that do not lead towards a purchase
ASIDE = ("menu", "orders", "help", "contact", "language", "lang:", "cancel:", "human", "badcode")
POLL_S = 0.002


@dataclass
class Walk:
    user: int
    started: float = 0.0
    first_reply_s: float = 0.0
    invoice_s: float = 0.0
    code_s: float = 0.0
    new_messages: int = 0
    edits: int = 0
    steps: list[str] = field(default_factory=list)
    #: seconds from the start to each answer seen
    marks: list[float] = field(default_factory=list)
    ref: str = ""


class Walker:
    def __init__(self, fake: FakeTelegram, user: int, timeout_s: float = 30.0) -> None:
        self.fake = fake
        self.user = user
        self.timeout_s = timeout_s
        self._seen = len(fake.shown_log)

    async def _next(self) -> tuple[str, dict[str, Any]]:
        """The next message sent to or edited in this user's chat after the last one this walker saw."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            log = self.fake.shown_log
            while self._seen < len(log):
                chat, how, message = log[self._seen]
                self._seen += 1
                if chat == self.user:
                    return how, message
            if time.monotonic() > deadline:
                raise AssertionError(f"user {self.user}: no answer within {self.timeout_s}s")
            await asyncio.sleep(POLL_S)

    async def _call(self, method: str, key: str, value: str, since: int) -> dict[str, Any]:
        """The bot's call of `method` with params[key] == value, looking only at calls after `since` (the fake's
        wait_for reads every call on every change: measurable while a flood is being answered)."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            calls = self.fake.calls
            for m, p in calls[since:]:
                if m == method and p.get(key) == value:
                    return p
            since = len(calls)
            if time.monotonic() > deadline:
                raise AssertionError(f"user {self.user}: no {method} within {self.timeout_s}s")
            await asyncio.sleep(POLL_S)

    @staticmethod
    def next_button(message: dict[str, Any]) -> str | None:
        rows = (message.get("reply_markup") or {}).get("inline_keyboard", [])
        for row in rows:
            for button in row:
                data = str(button.get("callback_data", ""))
                if data and not data.startswith(ASIDE):
                    return data
        return None

    async def to_invoice(self) -> Walk:
        walk = Walk(self.user, started=time.monotonic())
        self.fake.send_text(self.user, "/start")
        while True:
            how, message = await self._next()
            walk.marks.append(time.monotonic() - walk.started)
            if not walk.first_reply_s:
                walk.first_reply_s = time.monotonic() - walk.started
            walk.new_messages += how == "send"
            walk.edits += how == "edit"
            if "invoice" in message:
                walk.invoice_s = time.monotonic() - walk.started
                return walk
            data = self.next_button(message)
            if data is None:
                raise AssertionError(f"user {self.user}: stuck at {message.get('text')!r} after {walk.steps}")
            walk.steps.append(data)
            self.fake.press_button(self.user, int(message["message_id"]), data)

    async def buy(self, charge_id: str) -> Walk:
        """To the invoice, then pay it (pre-checkout, successful_payment) and wait for the code message."""
        walk = await self.to_invoice()
        invoice = next(p for m, p in reversed(self.fake.calls) if m == "sendInvoice" and int(p["chat_id"]) == self.user)
        walk.ref, amount = str(invoice["payload"]), sum(int(p["amount"]) for p in invoice["prices"])
        since = len(self.fake.calls)
        query = self.fake.pre_checkout(self.user, walk.ref, amount)
        await self._call("answerPreCheckoutQuery", "pre_checkout_query_id", query, since)
        walk.marks.append(time.monotonic() - walk.started)
        self.fake.successful_payment(self.user, walk.ref, amount, charge_id)
        while True:
            how, message = await self._next()
            walk.marks.append(time.monotonic() - walk.started)
            walk.new_messages += how == "send"
            if any(e.get("type") == "code" for e in message.get("entities", [])):
                walk.code_s = time.monotonic() - walk.started
                return walk
