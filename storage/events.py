"""The catalogue of order events: one type per thing that happens to an order, with typed parameters.

Every row of `order_events` is a type from `EventType` plus its parameters as JSON (saleor's `OrderEvents` and
`order/events.py`: one keyword-only constructor per type). Writers call the constructors below; readers look at
`OrderEvent.type` and `OrderEvent.params`, never at text. `OrderEvent.cause` renders an event for people (the
merchant's order history) and is never parsed back.

Two kinds of event: a *move* changes the order's state (`from_state` != `to_state`, checked against the table in
fulfillment/orders.py); a *note* (`NOTE_TYPES`: a dispute, a risk flag, free text) records something about the order
in the state it is in, so its row has `from_state == to_state`.

Plain data, importable anywhere.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any


class EventType(enum.StrEnum):
    CHECKOUT = "checkout"  # the order row is created
    STOCK_HELD = "stock_held"
    INVOICE_ISSUED = "invoice_issued"
    CANCELLED = "cancelled"  # by the customer
    RESERVATION_EXPIRED = "reservation_expired"
    PAYMENT_RECEIVED = "payment_received"  # provider, txn
    PAYMENT_MISMATCH = "payment_mismatch"  # amount or currency differs: held for review
    RISK_REVIEW = "risk_review"  # reasons: held for review by risk rules after payment
    CODES_ALLOCATED = "codes_allocated"
    DELIVERED = "delivered"  # outbox_id: the delivery row that was sent
    OUT_OF_STOCK = "out_of_stock"  # paid, but the pool could not serve it
    REVIEW_APPROVED = "review_approved"  # actor
    REFUNDED = "refunded"  # reason (for people; who or what asked for it)
    DISPUTE = "dispute"  # note. source: merchant, telegram, wechatpay
    RISK_FLAGGED = "risk_flagged"  # note. reasons: risk rules asked to hold this order before payment
    NOTE = "note"  # note. text (rows written before typed events whose text matched no type)
    SUPPLIER_ORDERED = "supplier_ordered"  # paid, own stock cannot serve it: delivering once a supplier delivers
    SUPPLIER_DELIVERED = "supplier_delivered"  # note. ref: the procurement that delivered (codes or a recharge)
    SUPPLIER_FAILED = "supplier_failed"  # cause: no source could serve the paid order (refund queued)


#: events that record something without changing the order's state (from_state == to_state)
NOTE_TYPES = frozenset({EventType.DISPUTE, EventType.RISK_FLAGGED, EventType.NOTE, EventType.SUPPLIER_DELIVERED})

_FIXED_TEXT = {
    EventType.CHECKOUT: "checkout",
    EventType.STOCK_HELD: "stock held",
    EventType.INVOICE_ISSUED: "invoice issued",
    EventType.CANCELLED: "cancelled by customer",
    EventType.RESERVATION_EXPIRED: "reservation ttl",
    EventType.PAYMENT_MISMATCH: "payment amount or currency mismatch",
    EventType.CODES_ALLOCATED: "codes allocated",
    EventType.OUT_OF_STOCK: "out of stock after payment",
    EventType.SUPPLIER_ORDERED: "waiting on a supplier",
}
_MAX_TEXT = 200
#: one encoder for every event (json.dumps with options builds a new one per call)
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class NewOrderEvent:
    """An event to record: its type and JSON-ready parameters (built by the constructors below)."""

    type: EventType
    params: Mapping[str, Any]

    @property
    def params_json(self) -> str:
        if not self.params:
            return "{}"
        return _JSON.encode(dict(self.params))

    @property
    def is_note(self) -> bool:
        return self.type in NOTE_TYPES


@dataclass(frozen=True, slots=True)
class OrderEvent:
    """An event as recorded."""

    order_id: int
    from_state: str | None
    to_state: str
    type: EventType
    params: Mapping[str, Any]
    at: datetime

    @property
    def is_note(self) -> bool:
        return self.type in NOTE_TYPES

    @property
    def cause(self) -> str:
        """The event for people (merchant order history); display only, never parsed."""
        return describe(self.type, self.params)


def describe(kind: EventType, p: Mapping[str, Any]) -> str:
    if kind in _FIXED_TEXT:
        return _FIXED_TEXT[kind]
    if kind is EventType.PAYMENT_RECEIVED:
        return f"payment {p.get('provider', '')}:{p.get('txn', '')}"
    if kind is EventType.RISK_REVIEW:
        return "risk review: " + ",".join(p.get("reasons", ()))
    if kind is EventType.RISK_FLAGGED:
        return "risk hold: " + ",".join(p.get("reasons", ()))
    if kind is EventType.DELIVERED:
        return f"outbox {p.get('outbox_id', '')} sent"
    if kind is EventType.REVIEW_APPROVED:
        return f"approved by {p.get('actor', '')}"
    if kind is EventType.REFUNDED:
        return str(p.get("reason", ""))
    if kind is EventType.SUPPLIER_DELIVERED:
        return f"supplier delivered ({p.get('ref', '')})"
    if kind is EventType.SUPPLIER_FAILED:
        return f"no supplier could serve it: {p.get('cause', '')}"
    if kind is EventType.DISPUTE:
        return f"dispute:{p.get('source', '')}"
    return str(p.get("text", ""))


def read(order_id: int, from_state: str | None, to_state: str, kind: str, params: str | Mapping[str, Any],
         at: datetime) -> OrderEvent:
    """A stored row back as an OrderEvent (params as JSON text or already decoded)."""
    decoded = json.loads(params) if isinstance(params, str) else params
    return OrderEvent(order_id, from_state, to_state, EventType(kind), decoded, at)


# -- constructors: one per type, keyword-only parameters --------------------------------------------------------

def _plain(kind: EventType) -> NewOrderEvent:
    return NewOrderEvent(kind, {})


def checkout() -> NewOrderEvent:
    return _plain(EventType.CHECKOUT)


def stock_held() -> NewOrderEvent:
    return _plain(EventType.STOCK_HELD)


def invoice_issued() -> NewOrderEvent:
    return _plain(EventType.INVOICE_ISSUED)


def cancelled() -> NewOrderEvent:
    return _plain(EventType.CANCELLED)


def reservation_expired() -> NewOrderEvent:
    return _plain(EventType.RESERVATION_EXPIRED)


def payment_received(*, provider: str, txn: str) -> NewOrderEvent:
    return NewOrderEvent(EventType.PAYMENT_RECEIVED, {"provider": provider, "txn": txn})


def payment_mismatch() -> NewOrderEvent:
    return _plain(EventType.PAYMENT_MISMATCH)


def _reasons(reasons: Iterable[str]) -> list[str]:
    """Rule ids, kept while their joined text fits the old 200-character cause."""
    kept: list[str] = []
    size = 0
    for reason in reasons:
        size += len(reason) + (1 if kept else 0)
        if size > _MAX_TEXT:
            break
        kept.append(reason)
    return kept


def risk_review(*, reasons: Iterable[str]) -> NewOrderEvent:
    return NewOrderEvent(EventType.RISK_REVIEW, {"reasons": _reasons(reasons)})


def codes_allocated() -> NewOrderEvent:
    return _plain(EventType.CODES_ALLOCATED)


def delivered(*, outbox_id: int) -> NewOrderEvent:
    return NewOrderEvent(EventType.DELIVERED, {"outbox_id": int(outbox_id)})


def out_of_stock() -> NewOrderEvent:
    return _plain(EventType.OUT_OF_STOCK)


def review_approved(*, actor: str) -> NewOrderEvent:
    return NewOrderEvent(EventType.REVIEW_APPROVED, {"actor": actor[:_MAX_TEXT]})


def refunded(*, reason: str) -> NewOrderEvent:
    return NewOrderEvent(EventType.REFUNDED, {"reason": reason[:_MAX_TEXT]})


def dispute(*, source: str) -> NewOrderEvent:
    source = source.strip()
    if not source or len(source) > 40:
        raise ValueError("a dispute source is 1-40 characters (merchant, telegram, wechatpay)")
    return NewOrderEvent(EventType.DISPUTE, {"source": source})


def risk_flagged(*, reasons: Iterable[str]) -> NewOrderEvent:
    return NewOrderEvent(EventType.RISK_FLAGGED, {"reasons": _reasons(reasons) or ["review"]})


def note(*, text: str) -> NewOrderEvent:
    return NewOrderEvent(EventType.NOTE, {"text": text[:_MAX_TEXT]})


def supplier_ordered() -> NewOrderEvent:
    return _plain(EventType.SUPPLIER_ORDERED)


def supplier_delivered(*, ref: str) -> NewOrderEvent:
    return NewOrderEvent(EventType.SUPPLIER_DELIVERED, {"ref": ref[:_MAX_TEXT]})


def supplier_failed(*, cause: str) -> NewOrderEvent:
    return NewOrderEvent(EventType.SUPPLIER_FAILED, {"cause": cause[:_MAX_TEXT]})
