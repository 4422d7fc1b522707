"""Chargebacks: money a payment platform took back from the merchant, recorded once per order as a dispute."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from fulfillment.errors import UnknownOrder
from storage import errors as store_errors
from storage.protocol import Store
from storage.records import Order


class DisputeRecorder(Protocol):
    """The risk engine's side of a dispute (audit, the buyer's cached stats); wired by the composition root."""

    async def record_dispute(self, order: Order, source: str, actor: str) -> bool: ...


class Chargebacks:
    def __init__(self, store: Store, risk: DisputeRecorder | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.risk = risk
        self.clock = clock

    async def record_chargeback(self, order: Order, source: str, actor: str) -> bool:
        """True when this is the order's first dispute (tell the merchant); False: it already had one."""
        try:
            if self.risk is not None:
                return await self.risk.record_dispute(order, source, actor)
            return await self.store.record_dispute(order.id, source, self.clock())
        except store_errors.UnknownRecord:
            raise UnknownOrder(order.ref) from None
