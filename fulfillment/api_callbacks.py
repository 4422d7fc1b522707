"""Signed callbacks to API clients: `order.delivered` when an API order's delivery row is processed,
`order.refunded` when its money went back to the wallet. Each carries an `event_id` (stable across retries: the
outbox row and the event type) and is signed like a request (fulfillment/api_signing.py) with the client's own key;
the delivery worker retries it with backoff until the client answers 2xx. The URL is checked again at send time
(a name may have moved to a private address since the order). The body names the order but carries no codes:
the client reads them with a signed GET /orders/{client_order_no}."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from fulfillment.api_clients import ApiKeys
from fulfillment.api_signing import Signer
from fulfillment.callback_urls import check_callback_url
from fulfillment.delivery import Delivery
from storage.protocols.api import ApiStore

EVENT_HEADER = "x-kami-event-id"
#: delivery kind -> callback event type (a resend is a chat matter: no callback)
EVENT_TYPES = {"deliver": "order.delivered", "refunded": "order.refunded", "failed": "order.failed"}


@dataclass(frozen=True)
class CallbackRequest:
    url: str
    body: bytes
    headers: dict[str, str]
    event_id: str


class ApiCallbacks:
    def __init__(self, store: ApiStore, keys: ApiKeys, allow_private: bool,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.keys = keys
        self.allow_private = allow_private
        self.clock = clock

    async def prepare(self, delivery: Delivery) -> CallbackRequest | None:
        """The signed POST to send for this delivery, or None (no callback URL, or nothing to tell).
        Raises callback_urls.BadCallbackUrl when the URL may not be called (any more)."""
        event_type = EVENT_TYPES.get(delivery.kind)
        link = await self.store.api_order_of(delivery.order.id)
        if event_type is None or link is None or not link.callback_url:
            return None
        client = next((c for c in await self.store.api_clients() if c.id == link.client_id), None)
        if client is None:
            return None
        await check_callback_url(link.callback_url, self.allow_private)
        event_id = f"evt_{delivery.outbox_id}_{event_type.split('.')[1]}"
        order = delivery.order
        body = json.dumps({
            "event_id": event_id, "type": event_type, "created_at": self.clock().isoformat(timespec="seconds"),
            "order": {"client_order_no": link.client_order_no, "order_no": order.ref, "sku": delivery.sku.slug,
                      "quantity": order.quantity, "amount": order.amount, "currency": order.currency},
        }, separators=(",", ":"), sort_keys=True).encode()
        parts = urlsplit(link.callback_url)
        headers = Signer(client.key_id, self.keys.secret_of(client)).headers("POST", parts.path or "/", parts.query,
                                                                            body)
        headers[EVENT_HEADER] = event_id
        headers["content-type"] = "application/json"
        return CallbackRequest(link.callback_url, body, headers, event_id)
