"""Store verbs for payments beyond an order's first one (WeChat Pay: a second trade of one order was paid), and a
read of claim-once keys (a notification's nonce is claimed once its event is recorded)."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple, Protocol

#: ledger kinds of a second payment that went straight back: money in, the same money out (net zero, and
#: not a sale in the reports)
#: `detail` of a payment event whose money went back, followed by the provider's refund reference
REFUNDED_DETAIL = "refunded "


class PaymentRecord(NamedTuple):
    """One recorded payment event of an order, as the provider reported it."""

    provider: str
    provider_txn_id: str
    amount: int  # what was actually paid, in minor units
    currency: str
    outcome: str  # allocated, failed, review, … ('' while unapplied)
    detail: str


class ExtraPaymentStore(Protocol):
    async def once_claimed(self, scope: str, key: str, now: datetime) -> bool:
        """Whether (scope, key) is claimed and not expired (a read: claims nothing)."""
        ...

    async def payment_records(self, order_id: int) -> list[PaymentRecord]:
        """Every payment event applied to an order, oldest first."""
        ...

    async def payment_record(self, provider: str, provider_txn_id: str) -> PaymentRecord | None: ...

    async def refund_extra_payment(self, provider: str, provider_txn_id: str, refund_ref: str,
                                   now: datetime) -> bool:
        """Record that a payment which is not the order's own went back to the payer: its event's detail and, unless
        settle_duplicate_payment booked them, two ledger lines (DUPLICATE_PAYMENT +amount, DUPLICATE_REFUND
        -amount), in one transaction. True the first time only."""
        ...
