"""The WeChat Official Account channel built from settings: routes, sender, alerts, menu (composition root).

Routes: `GET /wechat` answers the URL verification, `POST /wechat` takes messages and events in
plaintext, compatible or safe (AES) mode.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from bot.composition import Shop
from fulfillment.delivery import MerchantAlerts
from handlers.context import ShopContext
from handlers.router import Conversation
from handlers.types import Invoice
from handlers.wechat.adapter import WeChatBot
from handlers.wechat.api import WeChatApi
from handlers.wechat.callback import CallbackCrypto, Forged
from handlers.wechat.channel import CHANNEL, WeChatAlerts, WeChatSender
from handlers.wechat.numbering import ButtonMemory
from handlers.wechat.render import WeChatRenderer
from handlers.wechat.safe_xml import MAX_BODY, BadXml
from handlers.wechat.undelivered import Undelivered
from locales import Translator
from storage.records import Order

log = logging.getLogger("kamibot.wechat")


class AlertsFanOut:
    """Delivery problems go to every channel's merchants (Telegram and WeChat both configured)."""

    def __init__(self, *alerts: MerchantAlerts) -> None:
        self.alerts = alerts

    async def delivery_failed(self, order: Order, reason: str) -> None:
        for alerts in self.alerts:
            await alerts.delivery_failed(order, reason)


@dataclass
class WeChatRuntime:
    bot: WeChatBot
    api: WeChatApi
    sender: WeChatSender
    alerts: WeChatAlerts
    http: httpx.AsyncClient

    def routes(self) -> list[BaseRoute]:
        return [Route("/wechat", self.verify, methods=["GET"]), Route("/wechat", self.callback, methods=["POST"])]

    async def verify(self, request: Request) -> Response:
        try:
            return PlainTextResponse(self.bot.verify(request.query_params))
        except Forged:
            log.info("event=wechat.rejected reason=signature route=verify")
            return Response(status_code=403)

    async def callback(self, request: Request) -> Response:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY:
            return Response(status_code=413)
        body = b""
        async for chunk in request.stream():  # a lying or absent Content-Length is capped here
            body += chunk
            if len(body) > MAX_BODY:
                return Response(status_code=413)
        try:
            answer = await self.bot.receive(request.query_params, body)
        except Forged as exc:
            log.info("event=wechat.rejected reason=signature check=%s", str(exc)[:40])
            return Response(status_code=403)
        except BadXml as exc:
            log.info("event=wechat.rejected reason=bad_xml detail=%s", str(exc)[:40])
            return Response(status_code=400)
        return Response(answer, media_type="text/plain" if answer == "success" else "application/xml")

    async def stop(self) -> None:
        await self.http.aclose()


def build_wechat(shop: Shop, ctx: ShopContext, *, pay_link: Callable[[Invoice], str] | None = None,
                 passive_budget_s: float = 3.0, http: httpx.AsyncClient | None = None) -> WeChatRuntime:
    w = shop.settings.wechat
    http = http or httpx.AsyncClient(timeout=httpx.Timeout(5.0, connect=3.0))
    api = WeChatApi(shop.store, http, w.api_base_url, w.app_id, w.app_secret.get_secret_value())
    renderer = WeChatRenderer(ctx.tr, pay_link)
    sender = WeChatSender(ctx, api, renderer, Undelivered(shop.store))
    crypto = CallbackCrypto(w.token.get_secret_value(), w.app_id, w.encoding_aes_key.get_secret_value())
    ctx.merchants[CHANNEL] = set(w.admin_openids)
    bot = WeChatBot(ctx, Conversation(ctx), crypto, sender, renderer, ButtonMemory(shop.store), shop.store,
                    passive_budget_s, turns=shop.turns)
    alerts = WeChatAlerts(ctx, sender, list(w.admin_openids))
    shop.channels[CHANNEL] = sender
    shop.delivery.alerts = alerts if shop.delivery.alerts is None else AlertsFanOut(shop.delivery.alerts, alerts)
    ctx.senders[CHANNEL] = sender.send
    return WeChatRuntime(bot, api, sender, alerts, http)


def menu_definition(tr: Translator, lang: str) -> dict[str, Any]:
    """Shop / My orders / Help as CLICK buttons (keys handled by handlers.wechat.adapter.CLICKS)."""
    return {"button": [{"type": "click", "name": tr(lang, "wechat.menu_shop"), "key": "shop"},
                       {"type": "click", "name": tr(lang, "wechat.menu_orders"), "key": "orders"},
                       {"type": "click", "name": tr(lang, "wechat.menu_help"), "key": "help"}]}


async def sync_menu(shop: Shop) -> dict[str, Any]:
    """`kamibot wechat menu sync`: POST /cgi-bin/menu/create with the menu in the shop's default language."""
    w = shop.settings.wechat
    if not w.enabled or not w.app_secret.get_secret_value():
        raise ValueError("set KAMIBOT_WECHAT__APP_ID, __APP_SECRET and __TOKEN first")
    tr = Translator(shop.settings.default_language)
    menu = menu_definition(tr, shop.settings.default_language)
    async with httpx.AsyncClient(timeout=10.0) as http:
        await WeChatApi(shop.store, http, w.api_base_url, w.app_id, w.app_secret.get_secret_value()).create_menu(menu)
    return menu
