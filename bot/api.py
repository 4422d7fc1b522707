"""The order API built from settings (composition root): its services over the shop's store and vault, the
`api` delivery channel and `wallet` refund provider, and the Starlette routes under /api/v1."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from prometheus_client import Histogram
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from bot.composition import Shop
from bot.metrics import timed
from fulfillment.api_callbacks import ApiCallbacks
from fulfillment.api_clients import ApiKeys
from fulfillment.api_errors import ApiCode
from fulfillment.api_idempotency import IdempotentReplies
from fulfillment.api_orders import CHANNEL, ApiOrders, WalletProvider
from fulfillment.api_secrets import SecretBox
from handlers.api.auth import Authenticator
from handlers.api.delivery import ApiDeliveries
from handlers.api.openapi import document
from handlers.api.routes import PREFIX, ApiChannel
from handlers.api.wire import MAX_BODY, ApiRequest, ApiResponse, dump, refuse


class _AnyPath(Convertor[str]):
    """The rest of a path including newlines (Starlette's `path` stops at one, and would answer its own plain-text
    404): every request under /api/v1 gets the API's JSON answer."""

    regex = "(?s:.*)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("api_any", _AnyPath())


class _Endpoint:
    """Every request under /api/v1 as a plain ASGI app: the body read as it comes (capped at MAX_BODY, whatever
    Content-Length says), one ApiRequest, one JSON answer. No Starlette Request or Response objects: they cost more
    per order than the signature check."""

    def __init__(self, channel: ApiChannel) -> None:
        self.channel = channel

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer = await self._answer(scope, receive)
        headers = [(b"content-length", str(len(answer.body)).encode())]
        headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers.items()]
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": answer.body})

    async def _answer(self, scope: Scope, receive: Receive) -> ApiResponse:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY:
            return refuse(ApiCode.BODY_TOO_LARGE)
        body = b""
        while True:  # a lying or absent Content-Length is capped here
            message = await receive()
            if message["type"] == "http.disconnect":
                return refuse(ApiCode.MALFORMED)  # nobody is left to read the answer
            body += message.get("body", b"")
            if len(body) > MAX_BODY:
                return refuse(ApiCode.BODY_TOO_LARGE)
            if not message.get("more_body", False):
                break
        raw_path = scope.get("raw_path") or scope["path"].encode()
        client = scope.get("client")
        req = ApiRequest(scope["method"], raw_path.decode("latin-1").split("?", 1)[0],
                         scope.get("query_string", b"").decode("latin-1"), headers, body,
                         client[0] if client else "")
        return await self.channel.handle(req)


#: the route template API requests are counted under in the HTTP metrics (the Starlette route's own)
ROUTE = PREFIX + "/{rest:api_any}"
_METHODS = ("GET", "POST")


class ApiFront:
    """A request under /api/v1/ straight to the API's endpoint; anything else (lifespan included) to `app`.

    Behind the whole HTTP app an order paid two passes over every route pattern of `kamibot run` (Starlette's
    routing, then the metrics label) and two middleware layers: about 15 µs of an order's 180 µs of CPU on SQLite
    (bench_api.py). The answer is the same: the endpoint is the one the Starlette route serves. Its seconds are
    observed as MetricsMiddleware would, under the route's template (ROUTE)."""

    def __init__(self, app: ASGIApp, endpoint: ASGIApp, http: Histogram) -> None:
        self.app = app
        self.endpoint = endpoint
        self.http = http
        self._timers: dict[tuple[str, int], Histogram] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["method"] not in _METHODS
                or not scope["path"].startswith(PREFIX + "/")):
            await self.app(scope, receive, send)  # HEAD, OPTIONS…: Starlette answers them as before
            return
        method = scope["method"]
        await timed(self.endpoint, scope, receive, send,
                    lambda status, seconds: self._timer(method, status).observe(seconds))

    def _timer(self, method: str, status: int) -> Histogram:
        timer = self._timers.get((method, status))
        if timer is None:
            timer = self._timers[(method, status)] = self.http.labels(method=method, route=ROUTE, status=str(status))
        return timer


@dataclass
class ApiRuntime:
    channel: ApiChannel
    endpoint: _Endpoint = field(init=False)

    def __post_init__(self) -> None:
        self.endpoint = _Endpoint(self.channel)

    def routes(self) -> list[BaseRoute]:
        return [Route("/api/openapi.json", self.openapi, methods=["GET"]),
                Route(ROUTE, self.endpoint, methods=list(_METHODS))]

    def front(self, app: ASGIApp, http: Histogram) -> ApiFront:
        """`app` (which holds routes()) with API requests served before it (see ApiFront)."""
        return ApiFront(app, self.endpoint, http)

    async def openapi(self, request: Request) -> Response:
        return Response(dump(document()), media_type="application/json")


def build_api(shop: Shop) -> ApiRuntime:
    """Also registers the `api` delivery channel and the `wallet` refund provider on the shop."""
    settings = shop.settings.api
    keys = ApiKeys(shop.store, shop.vault)
    limiter = shop.risk.limiter if shop.risk is not None else None
    if limiter is None:
        from risk.limiters import MemoryLimiter

        limiter = MemoryLimiter()
    auth = Authenticator(keys, limiter, settings.rate_per_s, settings.burst)
    orders = ApiOrders(shop.store, shop.catalog, shop.vault, settings.allow_private_callbacks,
                       checkpoints=shop.payments.checkpoints)
    lease = timedelta(seconds=settings.idempotency_lease_s)
    replies = IdempotentReplies(shop.store, SecretBox(shop.vault), lease=lease, wait=lease * 2 / 3)
    shop.channels[CHANNEL] = ApiDeliveries(ApiCallbacks(shop.store, keys, settings.allow_private_callbacks))
    shop.providers["wallet"] = WalletProvider(shop.store)
    return ApiRuntime(ApiChannel(auth, keys, orders, replies))
