"""Console adapter: a chat in the terminal (or scripted over stdin) running the same conversations.

Buttons are numbered; typing the number presses it. An invoice is paid with the
test payment provider, standing in for Telegram Stars or WeChat Pay.
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Callable
from pathlib import Path

from fulfillment.delivery import Delivery
from fulfillment.errors import ShopError
from fulfillment.payments import TestPaymentProvider
from handlers.context import ShopContext
from handlers.render import delivery_reply
from handlers.router import Conversation
from handlers.types import Attachment, Button, Incoming, Reply

CHANNEL = "console"


class ConsoleChannel:
    """Delivers to the terminal: the fulfillment Channel for the console."""

    def __init__(self, ctx: ShopContext, write: Callable[[str], None], files_dir: Path) -> None:
        self.ctx = ctx
        self.write = write
        self.files_dir = files_dir

    async def deliver(self, delivery: Delivery) -> None:
        reply = delivery_reply(self.ctx.tr, delivery, delivery.order.language)
        render(reply, [], self.write, self.files_dir)


def render(reply: Reply, numbered: list[str], write: Callable[[str], None], files_dir: Path) -> None:
    """Print a reply; its buttons get the next numbers and their data is appended to `numbered`."""
    write(reply.text)
    for code in reply.codes:
        write(f"    {code}")
    if reply.document is not None:
        files_dir.mkdir(parents=True, exist_ok=True)
        target = files_dir / reply.document.filename
        target.write_bytes(reply.document.content)
        target.chmod(0o600)
        write(f"    [file] {target}")
    if reply.photo is not None:
        files_dir.mkdir(parents=True, exist_ok=True)
        target = files_dir / f"image-{hashlib.sha256(reply.photo).hexdigest()[:12]}.png"
        target.write_bytes(reply.photo)
        target.chmod(0o600)
        write(f"    [image] {target}")
    labels = []
    for row in reply.buttons:
        for button in row:
            numbered.append(button.data)
            labels.append(f"[{len(numbered)}] {button.label}")
    if labels:
        write("  ".join(labels))


class ConsoleChat:
    def __init__(self, ctx: ShopContext, conversation: Conversation, provider: TestPaymentProvider,
                 user_id: str, write: Callable[[str], None], files_dir: Path, language: str = "") -> None:
        self.ctx = ctx
        self.conversation = conversation
        self.provider = provider
        self.user_id = user_id
        self.write = write
        self.files_dir = files_dir
        self.language = language
        self.buttons: list[str] = []

    async def say(self, line: str) -> None:
        """One line typed by the user: a button number, `pay`, a /command, or text."""
        line = line.strip()
        if not line:
            return
        if line.isdigit() and 1 <= int(line) <= len(self.buttons):
            data = self.buttons[int(line) - 1]
            if data.startswith("testpay:"):
                await self.pay(data.split(":", 1)[1])
                return
            msg = Incoming(CHANNEL, self.user_id, self.user_id, button=data, language=self.language)
        else:
            msg = self._text_message(line)
        await self._show(await self.conversation.handle(msg))
        await self.ctx.delivery.drain()

    def _text_message(self, line: str) -> Incoming:
        if line.startswith("/import "):
            parts = shlex.split(line)
            if len(parts) >= 3:
                path = Path(parts[2]).expanduser()
                rest = " ".join([parts[0], parts[1], *parts[3:]])
                return Incoming(CHANNEL, self.user_id, self.user_id, text=rest, language=self.language,
                                attachment=Attachment(path.name, path))
        return Incoming(CHANNEL, self.user_id, self.user_id, text=line, language=self.language)

    async def pay(self, ref: str) -> None:
        order = await self.ctx.services.lookup.by_ref(ref)
        if order is None or order.user_id != self.user_id:
            self.write(self.ctx.tr(self.ctx.language(CHANNEL, self.user_id, self.language), "error.unknown_order"))
            return
        lang = self.ctx.language(CHANNEL, self.user_id, self.language)
        try:  # what Telegram's pre-checkout and the WeChat pay page check before any money moves
            await self.ctx.orders.check_payable(ref, order.amount, order.currency)
        except ShopError as exc:
            self.write(self.ctx.tr(lang, exc.message_id, seconds=exc.params.get("seconds", 60)))
            return
        result = await self.ctx.payments.receive(self.provider.pay(order))
        text = self.ctx.tr(lang, f"pay.result.{result.outcome.value}", ref=ref)
        await self._show([Reply(text, [[Button(self.ctx.tr(lang, "menu.orders"), "orders:0"),
                                         Button(self.ctx.tr(lang, "menu.shop"), "shop")]])])
        await self.ctx.delivery.drain()

    async def _show(self, replies: list[Reply]) -> None:
        self.buttons = []
        lang = self.ctx.language(CHANNEL, self.user_id, self.language)
        for reply in replies:
            if reply.invoice is not None:
                inv = reply.invoice
                pay = Button(self.ctx.tr(lang, "pay.test_button", total=self.ctx.tr.money(lang, inv.amount,
                             inv.currency)), f"testpay:{inv.order_ref}")
                reply = Reply(reply.text, [[pay], *reply.buttons], reply.codes, None, reply.document, reply.photo)
            render(reply, self.buttons, self.write, self.files_dir)
