"""The order API's endpoints under /api/v1: authenticate, check the scope, parse, call the fulfillment verb,
answer JSON. POST /orders runs under its Idempotency-Key (fulfillment/api_idempotency.py)."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fulfillment.api_clients import ApiKeys
from fulfillment.api_errors import ApiCode, ApiError
from fulfillment.api_idempotency import IdempotentReplies
from fulfillment.api_orders import ApiOrders
from fulfillment.api_signing import IDEMPOTENCY_HEADER
from handlers.api.auth import Authenticator, Caller, require
from handlers.api.models import parse_order, parse_refund_request
from handlers.api.wire import MAX_BODY, ApiRequest, ApiResponse, error_response, refuse, respond

log = logging.getLogger("kamibot.api")
PREFIX = "/api/v1"
_ORDER_NO = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_SLUG = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

Handler = Callable[[Caller, ApiRequest, str], Awaitable[ApiResponse]]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    scope: str
    handler: Handler


class ApiChannel:
    def __init__(self, auth: Authenticator, keys: ApiKeys, orders: ApiOrders, replies: IdempotentReplies) -> None:
        self.auth = auth
        self.keys = keys
        self.orders = orders
        self.replies = replies
        self.routes = [
            Route("GET", re.compile(r"^/products$"), "catalog:read", self._products),
            Route("GET", re.compile(r"^/products/(?P<arg>[^/]+)$"), "catalog:read", self._product),
            Route("GET", re.compile(r"^/wallet$"), "orders:read", self._wallet),
            Route("POST", re.compile(r"^/orders$"), "orders:write", self._place),
            Route("GET", re.compile(r"^/orders/(?P<arg>[^/]+)$"), "orders:read", self._order),
            Route("POST", re.compile(r"^/orders/(?P<arg>[^/]+)/refund-request$"), "orders:write", self._refund),
        ]

    async def handle(self, req: ApiRequest) -> ApiResponse:
        """Any request under /api/v1: a JSON answer, never an exception (INTERNAL hides what failed)."""
        try:
            return await self._handle(req)
        except ApiError as exc:
            return error_response(exc)
        except Exception as exc:  # noqa: BLE001 - the client gets INTERNAL, the log the class name only
            log.error("event=api.failed path=%s error=%s", req.path[:80], type(exc).__name__)
            return refuse(ApiCode.INTERNAL)

    async def _handle(self, req: ApiRequest) -> ApiResponse:
        if len(req.body) > MAX_BODY:
            raise ApiError(ApiCode.BODY_TOO_LARGE)
        sub = req.path[len(PREFIX):] if req.path.startswith(PREFIX) else ""
        found = next(((r, m) for r in self.routes if r.method == req.method
                      for m in [r.pattern.match(sub)] if m is not None), None)
        # an order without an Idempotency-Key claims its nonce in its own transaction (one write, not two)
        defer = found is not None and found[0].handler == self._place and not req.headers.get(IDEMPOTENCY_HEADER)
        caller = await self.auth.authenticate(req, defer_nonce=defer)
        if found is None:
            raise ApiError(ApiCode.NOT_FOUND)
        route, match = found
        try:
            require(caller.client, route.scope)
            return await route.handler(caller, req, match.groupdict().get("arg") or "")
        except ApiError as exc:
            # refused before or inside the transaction (undone): the nonce is still spent, exactly once
            if exc.code != ApiCode.NONCE_REUSED and not await self.auth.settle(caller):
                raise ApiError(ApiCode.NONCE_REUSED) from None
            raise
        except Exception:
            await self.auth.settle(caller)
            raise

    async def _products(self, caller: Caller, req: ApiRequest, arg: str) -> ApiResponse:
        return respond(200, {"products": [p.as_json() for p in await self.orders.products(caller.client)]})

    async def _product(self, caller: Caller, req: ApiRequest, arg: str) -> ApiResponse:
        if not _SLUG.match(arg):
            raise ApiError(ApiCode.UNKNOWN_SKU)
        return respond(200, (await self.orders.product(caller.client, arg)).as_json())

    async def _wallet(self, caller: Caller, req: ApiRequest, arg: str) -> ApiResponse:
        return respond(200, {"balances": await self.keys.wallet(caller.client.id)})

    async def _order(self, caller: Caller, req: ApiRequest, arg: str) -> ApiResponse:
        if not _ORDER_NO.match(arg):
            raise ApiError(ApiCode.UNKNOWN_ORDER)
        return respond(200, (await self.orders.order(caller.client, arg)).as_json())

    async def _refund(self, caller: Caller, req: ApiRequest, arg: str) -> ApiResponse:
        reason = parse_refund_request(req.body)
        if not _ORDER_NO.match(arg):
            raise ApiError(ApiCode.UNKNOWN_ORDER)
        return respond(202, (await self.orders.request_refund(caller.client, arg, reason)).as_json())

    async def _place(self, caller: Caller, req: ApiRequest, arg: str) -> ApiResponse:
        order = parse_order(req.body)
        key = req.headers.get(IDEMPOTENCY_HEADER, "")
        if not key:
            view = await self.orders.place(caller.client, order, caller.nonce)
            return respond(201, view.as_json())
        if not self.replies.valid_key(key):
            raise ApiError(ApiCode.MALFORMED)

        async def work() -> tuple[int, bytes]:
            try:
                view = await self.orders.place(caller.client, order)
            except ApiError as exc:
                answer = error_response(exc)
                return answer.status, answer.body
            return 201, respond(201, view.as_json()).body

        status, body = await self.replies.run(caller.client.id, key, order.digest(), work)
        return ApiResponse(status, body)
