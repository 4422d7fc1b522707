"""WeChat as a delivery channel and as the merchant's alert inbox, through customer-service messages.

A delivery is ONE text message: after a user's message WeChat allows at most 5 customer-service
messages within 48 h, and answers 45015 outside that window. 45015 and 43004 (unsubscribed) are
permanent: the order keeps its codes (shown under My orders on the customer's next message) and the
merchant is told. https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Service_Center_messages.html
"""

from __future__ import annotations

import logging

from fulfillment.delivery import Delivery, PermanentFailure, RetryLater
from handlers.context import ShopContext
from handlers.render import delivery_reply
from handlers.types import Reply
from handlers.wechat.access_token import TokenUnavailable
from handlers.wechat.api import UNREACHABLE, WeChatApi, WeChatApiError, WeChatUnavailable
from handlers.wechat.render import WeChatRenderer
from handlers.wechat.undelivered import Undelivered
from storage.records import Order

log = logging.getLogger("kamibot.wechat")
CHANNEL = "wechat"
RETRY_AFTER_S = 5.0


class WeChatSender:
    """fulfillment.delivery.Channel for WeChat, and `send(openid, Reply)` for messages nobody asked for."""

    def __init__(self, ctx: ShopContext, api: WeChatApi, renderer: WeChatRenderer,
                 undelivered: Undelivered) -> None:
        self.ctx = ctx
        self.api = api
        self.renderer = renderer
        self.undelivered = undelivered

    async def send_text(self, openid: str, text: str) -> None:
        try:
            await self.api.send_text(openid, text)
        except WeChatApiError as exc:
            if exc.errcode in UNREACHABLE:
                raise PermanentFailure(f"wechat errcode {exc.errcode}") from None
            raise
        except (WeChatUnavailable, TokenUnavailable):
            raise RetryLater(RETRY_AFTER_S) from None

    async def send(self, openid: str, reply: Reply) -> None:
        """Progress reports and notices: buttons are not numbered here (no turn to answer them in)."""
        lang = self.ctx.language(CHANNEL, openid, "")
        for text in self.renderer.render([Reply(reply.text, codes=reply.codes, invoice=reply.invoice,
                                                document=reply.document, photo=reply.photo)], lang).messages:
            await self.send_text(openid, text)

    async def deliver(self, delivery: Delivery) -> None:
        lang = self.ctx.language(CHANNEL, delivery.order.user_id, delivery.order.language)
        text = self.renderer.delivery(delivery_reply(self.ctx.tr, delivery, lang), lang)
        try:
            await self.send_text(delivery.order.chat_id, text)
        except PermanentFailure:
            if delivery.kind != "refunded":
                await self.undelivered.add(delivery.order.user_id, delivery.order.id)
            raise
        log.info("event=wechat.delivered order_id=%s kind=%s", delivery.order.id, delivery.kind)


class WeChatAlerts:
    """Merchant notices to the admin openids (best effort: their own 48 h window applies too)."""

    def __init__(self, ctx: ShopContext, sender: WeChatSender, admin_openids: list[str]) -> None:
        self.ctx = ctx
        self.sender = sender
        self.admin_openids = admin_openids

    async def notify(self, msgid: str, **params: object) -> None:
        for admin in self.admin_openids:
            lang = self.ctx.language(CHANNEL, admin, "")
            try:
                await self.sender.send(admin, Reply(self.ctx.tr(lang, msgid, **params)))
            except Exception as exc:  # noqa: BLE001 - a notice must never break the sale
                log.warning("event=alert.undelivered channel=wechat error=%s", type(exc).__name__)

    async def delivery_failed(self, order: Order, reason: str) -> None:
        await self.notify("wechat.alert_undeliverable", ref=order.ref, user=order.user_id)
