"""The order API built from settings (composition root): its services over the shop's store and vault, the
`api` delivery channel and `wallet` refund provider, and the Starlette routes under /api/v1."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

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


@dataclass
class ApiRuntime:
    channel: ApiChannel

    def routes(self) -> list[BaseRoute]:
        return [Route("/api/openapi.json", self.openapi, methods=["GET"]),
                Route(PREFIX + "/{rest:api_any}", self.endpoint, methods=["GET", "POST"])]

    async def openapi(self, request: Request) -> Response:
        return Response(dump(document()), media_type="application/json")

    async def endpoint(self, request: Request) -> Response:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY:
            return _response(refuse(ApiCode.BODY_TOO_LARGE))
        body = b""
        async for chunk in request.stream():  # a lying or absent Content-Length is capped here
            body += chunk
            if len(body) > MAX_BODY:
                return _response(refuse(ApiCode.BODY_TOO_LARGE))
        raw_path = request.scope.get("raw_path") or request.url.path.encode()
        req = ApiRequest(request.method, raw_path.decode("latin-1").split("?", 1)[0],
                         request.scope.get("query_string", b"").decode("latin-1"),
                         {k.lower(): v for k, v in request.headers.items()}, body,
                         request.client.host if request.client else "")
        return _response(await self.channel.handle(req))


def _response(answer: ApiResponse) -> Response:
    return Response(answer.body, status_code=answer.status, headers=answer.headers)


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
