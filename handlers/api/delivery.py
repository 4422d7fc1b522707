"""Delivery of API orders: the codes went back in the order's own answer (and stay readable with
GET /orders/{client_order_no}), so an order's delivery row completes at once (the order is `delivered`) and, like
its refund, only queues the signed callback (fulfillment/api_callbacks.py). A `callback` row is the POST to the
client: anything but a 2xx answer raises and the delivery worker retries it with backoff; a URL that may not be
called any more is a permanent failure of that row alone."""

from __future__ import annotations

import logging

import httpx

from fulfillment.api_callbacks import CALLBACK_KIND, ApiCallbacks
from fulfillment.callback_urls import BadCallbackUrl
from fulfillment.delivery import Delivery, PermanentFailure

log = logging.getLogger("kamibot.api")
TIMEOUT_S = 10.0


class CallbackNotAcknowledged(Exception):
    """The client answered something other than 2xx (retried by the delivery worker)."""


class ApiDeliveries:
    def __init__(self, callbacks: ApiCallbacks, http: httpx.AsyncClient | None = None) -> None:
        self.callbacks = callbacks
        self._http = http

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:  # redirects are not followed: a 3xx is not an acknowledgement
            self._http = httpx.AsyncClient(timeout=TIMEOUT_S, follow_redirects=False)
        return self._http

    async def deliver(self, delivery: Delivery) -> None:
        if delivery.kind != CALLBACK_KIND:
            await self.callbacks.queue(delivery)
            return
        try:
            request = await self.callbacks.prepare(delivery)
        except BadCallbackUrl:
            log.warning("event=api.callback_refused order_id=%s reason=address", delivery.order.id)
            raise PermanentFailure("callback url may not be called") from None
        if request is None:
            return
        answer = await self.http.post(request.url, content=request.body, headers=request.headers)
        if not 200 <= answer.status_code < 300:
            raise CallbackNotAcknowledged(f"status {answer.status_code}")
        log.info("event=api.callback_sent order_id=%s event_id=%s", delivery.order.id, request.event_id)

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
