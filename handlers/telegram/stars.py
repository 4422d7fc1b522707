"""Stars recovery: find payments (and refunds) Telegram made that the shop never heard of, from getStarTransactions.

Telegram sends an update once; whatever the bot acknowledged and had not recorded (a crash at the wrong moment)
is gone from the update stream, but not from the bot's Stars account. `getStarTransactions` lists the bot's
transactions oldest first (`offset` = how many to skip, `limit` 1-100). An incoming payment has `source` = a
`TransactionPartnerUser` (type "user", `user`, `invoice_payload`) and `id` = the payment's
`telegram_payment_charge_id`; a refund is outgoing, with `receiver` = that user and the id of the payment it
returns. https://core.telegram.org/bots/api#getstartransactions , #startransaction , #transactionpartneruser

Every incoming payment for one of the shop's orders goes through the same idempotent path as a
`successful_payment` update (recorded once by its charge id); every refund through the same chargeback check as
a `refunded_payment` update. One process at a time (a store lease); the position in the list is kept in the
store, so each transaction is read once, except the youngest ones (`grace`), left for the live updates first.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from handlers.telegram.payments import TelegramPayments
from handlers.telegram.request import BotApi

log = logging.getLogger("kamibot.telegram")
LEASE = "telegram.stars_recovery"
CURSOR = "telegram.stars_offset"
PAGE = 100  # getStarTransactions accepts a limit of 1-100



class RecoveryState(Protocol):
    """What the recovery job keeps in the shared store: its lease and its position in the list."""

    async def try_lease(self, name: str, holder: str, until: datetime, now: datetime) -> bool: ...
    async def release_lease(self, name: str, holder: str) -> None: ...
    async def kv_get(self, key: str, now: datetime) -> str | None: ...
    async def kv_put(self, key: str, value: str, expires_at: datetime | None) -> None: ...

class StarsRecovery:
    def __init__(self, shared: RecoveryState, api: BotApi, payments: TelegramPayments, grace: timedelta,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC), lease: timedelta = timedelta(minutes=2)
                 ) -> None:
        self.shared = shared
        self.api = api
        self.payments = payments
        self.grace = grace
        self.clock = clock
        self.lease = lease
        self.holder = uuid.uuid4().hex

    async def tick(self) -> int:
        """Read the transactions not read yet; the number read (a full page asks for the next tick at once)."""
        now = self.clock()
        if not await self.shared.try_lease(LEASE, self.holder, now + self.lease, now):
            return 0  # another process is at it
        try:
            return await self._page(now)
        finally:
            await self.shared.release_lease(LEASE, self.holder)

    async def _page(self, now: datetime) -> int:
        offset = int(await self.shared.kv_get(CURSOR, now) or 0)
        result = await self.api.call("getStarTransactions", offset=offset, limit=PAGE)
        transactions: list[dict[str, Any]] = list(result.get("transactions") or []) if isinstance(result, dict) else []
        read = 0
        try:
            for tx in transactions:
                if datetime.fromtimestamp(int(tx.get("date") or 0), UTC) > now - self.grace:
                    break  # young: its update may still be on its way; next time
                await self._one(tx)
                read += 1
        finally:
            if read:
                await self.shared.kv_put(CURSOR, str(offset + read), None)
        return read if read == PAGE else 0

    async def _one(self, tx: dict[str, Any]) -> None:
        source, receiver = tx.get("source") or {}, tx.get("receiver") or {}
        charge_id, amount = str(tx.get("id") or ""), tx.get("amount")
        if not charge_id or (source or receiver).get("transaction_type", "invoice_payment") != "invoice_payment":
            return  # paid media, gifts, withdrawals: not the shop's invoices
        if source.get("type") == "user" and source.get("invoice_payload"):
            ref = str(source["invoice_payload"])
            # not this shop's invoice (the bot's older history)
            if await self.payments.ctx.services.lookup.by_ref(ref) is None:
                log.info("event=telegram.stars_skipped reason=unknown_order")
                return
            user = int(source["user"]["id"])
            result = await self.payments.apply(user, str(user), charge_id, ref, int(amount or 0), "XTR")
            if result is not None and result.outcome.value != "already_applied":
                log.warning("event=telegram.payment_recovered outcome=%s order_id=%s", result.outcome.value,
                            result.order_id)
        elif receiver.get("type") == "user" and receiver.get("invoice_payload"):
            await self.payments.refund_seen(int(receiver["user"]["id"]), str(receiver["invoice_payload"]), charge_id)
