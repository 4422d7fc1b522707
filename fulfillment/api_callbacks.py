"""Signed callbacks to API clients: `order.delivered` once an API order's delivery row is done (its codes went out
in the order's answer, or for a sourced or recharge SKU once the supplier delivered), `order.failed` then
`order.refunded` when no supplier could serve it, `order.refunded` once its money went back to the wallet.

Each event is its own outbox row (kind `callback`, the event in its payload), queued by the API channel when the
order's delivery or refund row is processed: the order's state never waits for the client's endpoint, and the
delivery worker retries the callback with backoff until the client answers 2xx. The `event_id` is fixed when the
event is queued (from the row that caused it), so a repeat — a retry, or the row queued twice after a crash — is
recognisable by the client. Each POST is signed like a request (fulfillment/api_signing.py) with the client's own
key; the URL is checked again at send time (a name may point at a private address by then). The body names the
order but carries no codes: the client reads them with a signed GET /orders/{client_order_no}."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import urlsplit

from fulfillment.api_clients import ApiKeys
from fulfillment.api_signing import Signer
from fulfillment.callback_urls import check_callback_url
from fulfillment.delivery import Delivery
from storage.protocols.api import ApiStore
from storage.protocols.orders import OutboxStore

EVENT_HEADER = "x-kami-event-id"
CALLBACK_KIND = "callback"
#: delivery kind -> the event it causes (a resend is a chat matter: no callback)
EVENT_TYPES = {"deliver": "order.delivered", "refunded": "order.refunded"}
#: told before `order.refunded` when no supplier could serve a paid order (fulfillment/fulfil_sourced.py)
FAILED = "order.failed"


class CallbackStore(ApiStore, OutboxStore, Protocol):
    """API orders and clients, and the outbox the callbacks are queued in."""


@dataclass(frozen=True)
class CallbackRequest:
    url: str
    body: bytes
    headers: dict[str, str]
    event_id: str


class ApiCallbacks:
    def __init__(self, store: CallbackStore, keys: ApiKeys, allow_private: bool,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.keys = keys
        self.allow_private = allow_private
        self.clock = clock

    async def queue(self, delivery: Delivery) -> str | None:
        """Queue the event this delivery row causes, when the order has a callback URL; its (last) event id. The
        refund of an order no supplier could serve (a `delivering` order of a sourced or recharge SKU) is told as
        `order.failed`, then `order.refunded`."""
        event_type = EVENT_TYPES.get(delivery.kind)
        link = await self.store.api_order_of(delivery.order.id)
        if event_type is None or link is None or not link.callback_url:
            return None
        types = [FAILED, event_type] if delivery.kind == "refunded" and delivery.notice else [event_type]
        event_id = None
        for kind in types:
            event_id = f"evt_{delivery.outbox_id}_{kind.split('.')[1]}"
            payload = json.dumps({"type": kind, "event_id": event_id, "at": self.clock().isoformat(
                timespec="seconds")})
            await self.store.enqueue_outbox(delivery.order.id, CALLBACK_KIND, payload, self.clock())
        return event_id

    async def prepare(self, delivery: Delivery) -> CallbackRequest | None:
        """The signed POST of a `callback` row, or None (the order or client is gone). Raises
        callback_urls.BadCallbackUrl when the URL may not be called (any more)."""
        event = json.loads(delivery.payload)
        link = await self.store.api_order_of(delivery.order.id)
        client = None
        if link is not None:
            client = next((c for c in await self.store.api_clients() if c.id == link.client_id), None)
        if link is None or client is None or not link.callback_url:
            return None
        await check_callback_url(link.callback_url, self.allow_private)
        order = delivery.order
        body = json.dumps({
            "event_id": event["event_id"], "type": event["type"], "created_at": event["at"],
            "order": {"client_order_no": link.client_order_no, "order_no": order.ref, "sku": delivery.sku.slug,
                      "quantity": order.quantity, "amount": order.amount, "currency": order.currency},
        }, separators=(",", ":"), sort_keys=True).encode()
        parts = urlsplit(link.callback_url)
        headers = Signer(client.key_id, self.keys.secret_of(client)).headers("POST", parts.path or "/", parts.query,
                                                                            body)
        headers[EVENT_HEADER] = str(event["event_id"])
        headers["content-type"] = "application/json"
        return CallbackRequest(link.callback_url, body, headers, str(event["event_id"]))
