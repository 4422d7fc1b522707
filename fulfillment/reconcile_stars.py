"""Telegram Stars reconciliation: the bot's Star transactions of one day against the shop's `telegram` payments.

`getStarTransactions` (https://core.telegram.org/bots/api#getstartransactions) pages with `offset` (how many to
skip) and `limit` (1-100). A StarTransaction (#startransaction) has `id`, `amount`, `date` and a `source` for
incoming Stars or a `receiver` for outgoing ones; for an invoice paid by a user the partner is a
TransactionPartnerUser (#transactionpartneruser, type "user", transaction_type "invoice_payment",
`invoice_payload`) and `id` is the payment's `telegram_payment_charge_id`. A refund is an outgoing transaction
to that user under the id of the payment it returns. Other transactions (paid media, gifts, withdrawals, ads) are
not the shop's and are left alone.

Matched: every invoice payment of the day with the shop's payment of that charge id (missing in the shop, amount
mismatch), the shop's payments of the day with the whole list (missing at Telegram), and the day's refunds on both
sides per charge (refund mismatch). A malformed transaction refuses the whole run: nothing is recorded.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, tzinfo
from typing import Any, Protocol

from fulfillment.reconcile import Findings, Kind, ReconcileError, day_window
from storage.protocol import Store
from storage.protocols.reconcile import NewDiscrepancy

SOURCE = PROVIDER = "telegram"
PAGE = 100  # getStarTransactions: limit 1-100
MAX_PAGES = 10_000


class StarsApi(Protocol):
    async def call(self, method: str, **params: Any) -> Any: ...


def _int(tx: dict[str, Any], key: str) -> int:
    value = tx.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ReconcileError("reconcile.bad_transactions", f"a Star transaction without an integer {key}",
                             reason=f"{key} is not an integer")
    return value


def _invoice_partner(partner: object) -> dict[str, Any] | None:
    """The partner when it is a user paying (or being refunded) an invoice of this bot."""
    if not isinstance(partner, dict) or partner.get("type") != "user":
        return None
    if partner.get("transaction_type", "invoice_payment") != "invoice_payment":
        return None
    return partner


class StarTransactions:
    """The `telegram` reconciliation source."""

    def __init__(self, store: Store, api: StarsApi) -> None:
        self.store = store
        self.api = api

    async def _all(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for page in range(MAX_PAGES):
            try:
                result = await self.api.call("getStarTransactions", offset=page * PAGE, limit=PAGE)
            except Exception as exc:  # noqa: BLE001 - the Bot API client's own errors, whatever the library
                raise ReconcileError("reconcile.provider_failed", f"Telegram: {type(exc).__name__}",
                                     error=type(exc).__name__) from None
            batch = result.get("transactions") if isinstance(result, dict) else None
            if not isinstance(batch, list) or not all(isinstance(t, dict) for t in batch):
                raise ReconcileError("reconcile.bad_transactions", "getStarTransactions answered no list",
                                     reason="no transaction list")
            found += batch
            if len(batch) < PAGE:
                break
        return found

    async def collect(self, day: date, zone: tzinfo) -> Findings:
        since, until = day_window(day, zone)
        period = day.isoformat()
        found: list[NewDiscrepancy] = []
        paid_ids: set[str] = set()
        refunds: dict[str, int] = defaultdict(int)
        payloads: dict[str, str] = {}
        checked = 0
        for tx in await self._all():
            charge, amount, at = str(tx.get("id") or ""), _int(tx, "amount"), _int(tx, "date")
            if not charge:
                raise ReconcileError("reconcile.bad_transactions", "a Star transaction without an id",
                                     reason="no id")
            source, receiver = _invoice_partner(tx.get("source")), _invoice_partner(tx.get("receiver"))
            if source is not None:
                paid_ids.add(charge)
            when = datetime.fromtimestamp(at, UTC)
            if not since <= when < until or (source is None and receiver is None):
                continue
            checked += 1
            partner = source or receiver or {}
            payloads[charge] = str(partner.get("invoice_payload", ""))[:64]
            if receiver is not None:
                refunds[charge] += amount
                continue
            mine = await self.store.shop_payment(PROVIDER, charge)
            if mine is None:
                found.append(NewDiscrepancy(SOURCE, Kind.MISSING_IN_SHOP.value, charge, payloads[charge], "XTR", None,
                                            amount, "a Stars payment for a charge the shop does not know", period))
            elif mine.amount != amount or mine.currency != "XTR":
                found.append(NewDiscrepancy(SOURCE, Kind.AMOUNT_MISMATCH.value, charge, mine.order_ref, "XTR",
                                            mine.amount, amount, "", period))
        for p in await self.store.shop_payments(PROVIDER, since, until):
            if p.txn not in paid_ids:
                found.append(NewDiscrepancy(SOURCE, Kind.MISSING_AT_PROVIDER.value, p.txn, p.order_ref, p.currency,
                                            p.amount, None, "", period))
        shop_refunds: dict[str, int] = defaultdict(int)
        for r in await self.store.shop_refunds(PROVIDER, since, until):
            shop_refunds[r.txn] += r.amount
            payloads.setdefault(r.txn, r.order_ref)
        for charge in sorted(set(refunds) | set(shop_refunds)):
            if refunds.get(charge, 0) != shop_refunds.get(charge, 0):
                found.append(NewDiscrepancy(SOURCE, Kind.REFUND_MISMATCH.value, charge, payloads.get(charge, ""),
                                            "XTR", shop_refunds.get(charge, 0), refunds.get(charge, 0), "", period))
        return Findings(checked, found)
