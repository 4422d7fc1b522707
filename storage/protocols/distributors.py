"""The distributor seams (issue 15): distributors (an API client, a referrer in chat, or both), their price lists
and commission rates, the commission ledger (accruals once per delivered order, reversals once per refunded order,
payouts) and the reads a statement needs.

Records and store outcomes of these verbs live here (storage/records.py and storage/errors.py are changed by other
work at the same time); fulfillment/distributors.py re-exports what callers above it need.
"""

from __future__ import annotations

import enum
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from storage.errors import StoreError
from storage.protocols.api import WalletLine


class DistributorTaken(StoreError):
    """A distributor of that name or referral code exists, or the API client belongs to another one."""


class PayableExceeded(StoreError):
    """A payout larger than the payable balance of its currency (nothing changed); `payable` is that balance
    (negative: a clawback is carried)."""

    def __init__(self, message: str, payable: int = 0) -> None:
        super().__init__(message)
        self.payable = payable


class PartRefund(enum.StrEnum):
    """What `refund_part` did with a partial refund."""

    RECORDED = "recorded"  # its refund line and its commission reversal are written
    ALREADY = "already"  # that refund reference was recorded before: nothing changed
    COMPLETES = "completes"  # it gives back the rest of the order: a full refund (`refund`) books it; nothing changed
    TOO_BIG = "too_big"  # more than what is left of the order's amount (or not positive): nothing changed
    NOT_REFUNDABLE = "not_refundable"  # unknown order, not paid, or in a state `refund` refuses: nothing changed


class CommissionKind(enum.StrEnum):
    ACCRUAL = "accrual"  # + commission of a delivered order a referred customer placed in chat
    REVERSAL = "reversal"  # - the accrual of that order again, once it was refunded (a share on a partial refund)
    PAYOUT = "payout"  # - money the merchant paid the distributor


@dataclass(frozen=True, slots=True)
class Distributor:
    id: int
    name: str
    ref_code: str  # customers who came through `/start ref_<code>` (or WeChat scene ref_<code>) are its referrals
    api_client_id: int | None
    discount_bp: int  # off the `api` channel price, for SKUs without a fixed price
    commission_bp: int  # of a referred customer's delivered order, unless the SKU has its own rate
    created_at: datetime


@dataclass(frozen=True, slots=True)
class DistributorPrice:
    sku_id: int
    currency: str
    amount: int
    below_cost: bool = False  # the merchant's explicit override: sold at this price even under cost


@dataclass(frozen=True, slots=True)
class CommissionLine:
    """One movement of a distributor's payable balance: `amount` signed; for accruals and reversals the order."""

    id: int
    distributor_id: int
    currency: str
    amount: int
    kind: CommissionKind
    order_id: int | None
    note: str
    at: datetime
    order_ref: str = ""
    sku_id: int | None = None
    order_amount: int = 0


class DistributorStore(Protocol):
    async def create_distributor(self, name: str, ref_code: str, api_client_id: int | None,
                                 now: datetime) -> Distributor:
        """Raises DistributorTaken."""
        ...

    async def distributor(self, name: str) -> Distributor | None: ...
    async def distributor_of_client(self, api_client_id: int) -> Distributor | None: ...
    async def distributors(self) -> list[Distributor]: ...

    async def update_distributor(self, distributor_id: int, *, discount_bp: int | None = None,
                                 commission_bp: int | None = None, api_client_id: int | None = None
                                 ) -> Distributor:
        """Change the given fields (None: unchanged). Raises DistributorTaken when the client is another's."""
        ...

    async def set_distributor_price(self, distributor_id: int, sku_id: int, price: DistributorPrice | None) -> None:
        """None removes the SKU's fixed price."""
        ...

    async def distributor_prices(self, distributor_id: int) -> dict[int, DistributorPrice]: ...

    async def set_commission_rate(self, distributor_id: int, sku_id: int, bp: int | None) -> None:
        """The SKU's own commission rate; None: the distributor's rate again."""
        ...

    async def commission_rates(self, distributor_id: int) -> dict[int, int]: ...

    async def pool_last_cost(self, pool_id: int) -> tuple[int, str] | None:
        """The newest code batch's cost per use of the pool and its currency; None without batches."""
        ...

    async def accrue_commissions(self, delivered: Collection[str], except_channels: Collection[str], now: datetime,
                                 limit: int, order_id: int | None = None) -> int:
        """One transaction: a commission line for each order in a `delivered` state, of a channel not in
        `except_channels`, placed after the distributor was added by a customer whose referrer is the
        distributor's code, unless the order has one already (at most `limit` orders; with `order_id` that order
        only). The rate is the SKU's own, else the distributor's, as it is now; a rate of 0 writes a line of 0, so
        a later rate never applies to orders delivered before it. Returns lines written."""
        ...

    async def reverse_commissions(self, refunded: Collection[str], now: datetime, limit: int) -> int:
        """One transaction: a reversal line for each non-zero accrual whose order is now in a `refunded` state,
        unless it has one."""
        ...

    async def refund_part(self, order_id: int, refund_ref: str, amount: int, now: datetime) -> PartRefund:
        """One transaction: a partial refund of the order (keyed by the provider's refund reference), its `refund`
        ledger line of -amount and the reversal of the distributor's commission share (storage/sqlite_commission.py
        says how it is rounded). The order keeps its state; a later `refund` books only what is left and reverses
        the rest of the commission in its own transaction."""
        ...

    async def refunded_parts(self, order_id: int) -> int:
        """What partial refunds of the order gave back so far (0 without any)."""
        ...

    async def record_payout(self, distributor_id: int, currency: str, amount: int, note: str,
                            now: datetime) -> CommissionLine:
        """A payout line of -amount; raises PayableExceeded when the payable balance of the currency is smaller
        (a balance of 0 or below, e.g. a clawback carried after refunds of commission paid out, refuses any)."""
        ...

    async def commission_balances(self, distributor_id: int, before: datetime | None = None) -> dict[str, int]:
        """Payable per currency: the sum of its lines (before a time: of the lines before it)."""
        ...

    async def commission_lines(self, distributor_id: int, start: datetime, end: datetime) -> list[CommissionLine]:
        """Lines with start <= at < end, oldest first, with their orders' ref, SKU and amount."""
        ...

    async def wallet_lines_between(self, api_client_id: int, start: datetime, end: datetime) -> list[WalletLine]:
        """The API client's wallet movements with start <= at < end, oldest first."""
        ...
