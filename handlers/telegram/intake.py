"""Every Telegram update as it arrives: flood control first, then one user's updates in order, then a place
among the updates being handled.

python-telegram-bot runs `do_process_update` inside its own semaphore of concurrent updates. Were the
per-user lock taken in there, a flooding user's queued updates would hold every place while they wait for
their own lock, and everyone else would wait behind them (issue 13 §2). So PTB's semaphore is made wide
(it only admits tasks PTB has already created), and the bound is taken here, after the user's turn has
come: a user holds at most one place, whatever they send. Flood control runs before any of it, for every
message and button press, and an update over the limit is dropped, never queued.

Several instances behind one webhook: the user's turn is also taken in the shared `UserTurns` (Redis or a
database lease), and the webhook answer waits until the update holds its turn (`entered`). A user's next update
sent after that answer (one connection per chat at a time; `max_connections=1` makes it certain) queues behind
this one on whichever instance it lands: one user's updates are handled in the order Telegram sent them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from telegram import Update
from telegram.ext import BaseUpdateProcessor

from handlers.context import ShopContext
from handlers.flood import Admission, FloodGate
from handlers.ordering import InOrder, UserTurns
from handlers.telegram.channel import CHANNEL, TelegramSender
from handlers.types import Reply

log = logging.getLogger("kamibot.telegram")
#: PTB's own semaphore: wide, so that no update waits in it (every update is a task already)
PTB_PLACES = 1 << 30
Gate = Callable[[Update], Awaitable[bool]]


class UpdateIntake(BaseUpdateProcessor):
    """Updates run concurrently (at most `max_concurrent_updates` at a time), one user's in arrival order."""

    def __init__(self, max_concurrent_updates: int = 256, turns: UserTurns | None = None) -> None:
        super().__init__(PTB_PLACES)
        self.places = max_concurrent_updates
        self._working = asyncio.Semaphore(max_concurrent_updates)
        self.in_order: InOrder[int] = InOrder(turns, "telegram")
        #: update id -> set once the update holds its user's turn (or needs none, or was dropped)
        self._entered: dict[int, asyncio.Future[None]] = {}
        #: decides at arrival whether an update is handled at all (set by the adapter: ArrivalCheck)
        self.gate: Gate | None = None

    def entered(self, update_id: int) -> asyncio.Future[None]:
        """Done once the update `update_id` (about to be queued) holds its user's turn, needs none, or was
        dropped: the webhook answers then (see the module's docstring)."""
        future = self._entered[update_id] = asyncio.get_running_loop().create_future()
        future.add_done_callback(lambda _: self._entered.pop(update_id, None))
        return future

    def _enter(self, update: object) -> None:
        future = self._entered.get(update.update_id) if isinstance(update, Update) else None
        if future is not None and not future.done():
            future.set_result(None)

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        try:
            await self._process(update, coroutine)
        finally:
            self._enter(update)

    async def _process(self, update: object, coroutine: Awaitable[Any]) -> None:
        if isinstance(update, Update) and not await self._admitted(update):
            if isinstance(coroutine, Coroutine):
                coroutine.close()  # never started: nothing to undo
            return
        user = update.effective_user if isinstance(update, Update) else None
        if user is None or (isinstance(update, Update) and update.pre_checkout_query is not None):
            # a pre-checkout query must be answered within Telegram's 10 s: never behind the payer's own queue
            # (it only exists once its invoice was sent, so it cannot overtake the update that made it)
            self._enter(update)
            async with self._working:
                await coroutine
            return
        async with self.in_order.turn(user.id):
            self._enter(update)
            async with self._working:
                await coroutine

    async def _admitted(self, update: Update) -> bool:
        if self.gate is None:
            return True
        try:
            return await self.gate(update)
        except Exception:  # noqa: BLE001 - flood control never drops an update because it failed itself
            log.exception("event=telegram.intake_failed")
            return True

    async def initialize(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None


def counted(update: Update) -> bool:
    """Every message and button press counts; payments never do (they are never dropped)."""
    if update.callback_query is not None:
        return True
    message = update.message
    if message is None:
        return False
    return message.successful_payment is None and message.refunded_payment is None


class ArrivalCheck:
    """The gate of UpdateIntake: counts the update against its user's flood bucket. A pressed button's spinner
    is stopped here, at once, whether the press is handled or dropped; an update over the limit is dropped, the
    first of a flood with one "slow down" notice."""

    def __init__(self, ctx: ShopContext, sender: TelegramSender, flood: FloodGate | None = None) -> None:
        self.ctx = ctx
        self.sender = sender
        self.flood = flood or FloodGate(ctx)

    async def __call__(self, update: Update) -> bool:
        user, chat = update.effective_user, update.effective_chat
        if user is None or not counted(update):
            return True
        admission = await self.flood.admit(CHANNEL, str(user.id))
        query = update.callback_query
        if query is not None:
            if admission is Admission.ANSWER:
                self.ctx.spawn(self.sender.answer_button(query.id))  # while the press is handled
            else:
                await self.sender.answer_button(query.id)
        if admission is Admission.ANSWER:
            return True
        log.info("event=telegram.flood_dropped user=%s notice=%s", user.id, admission is Admission.NOTICE)
        if admission is Admission.NOTICE:
            lang = self.ctx.language(CHANNEL, str(user.id), user.language_code or "")
            chat_id = str(chat.id if chat is not None else user.id)
            try:
                await self.sender.send(chat_id, Reply(self.ctx.tr(lang, "risk.slow_down")))
            except Exception as exc:  # noqa: BLE001 - a lost notice is only logged
                log.warning("event=telegram.reply_dropped chat=%s reason=%s", chat_id, type(exc).__name__)
        return False
