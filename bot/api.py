"""The order API built from settings (composition root): its services over the shop's store and vault, the
`api` delivery channel and `wallet` refund provider, and the Starlette routes under /api/v1."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from bot.composition import Shop
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


@dataclass
class ApiRuntime:
    channel: ApiChannel

    def routes(self) -> list[BaseRoute]:
        return [Route("/api/openapi.json", self.openapi, methods=["GET"]),
                Route(PREFIX + "/{rest:api_any}", _Endpoint(self.channel), methods=["GET", "POST"])]

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
