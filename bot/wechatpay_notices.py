"""Who hears about held and returned WeChat Pay payments (fulfillment/wechatpay_extra.PaymentNotices).

Merchants through the same notices the channels already send (`shop.delivery.alerts`: Telegram, WeChat or both,
the path of Telegram's review notice, approve / reject buttons where the channel has buttons); the buyer in the
chat of the order through the channel's sender (`ShopContext.senders`). A notice never breaks the payment.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from bot.composition import Shop
from fulfillment.order_lookup import OrderLookup
from handlers.risk_admin import review_buttons
from handlers.types import Reply
from locales import Translator, normalise_language
from storage.records import Order

log = logging.getLogger("kamibot.wechatpay")
Send = Callable[[str, Any], Awaitable[None]]


def merchant_alerts(alerts: object) -> list[Any]:
    """The channels' merchant notices behind `shop.delivery.alerts` (one, or a fan-out over several)."""
    if alerts is None:
        return []
    inner = getattr(alerts, "alerts", None)
    if isinstance(inner, tuple | list):
        return [a for part in inner for a in merchant_alerts(part)]
    return [alerts] if hasattr(alerts, "notify") else []


class ShopNotices:
    def __init__(self, shop: Shop, senders: Mapping[str, Send] | None = None) -> None:
        self.shop = shop
        self.senders = senders if senders is not None else {}
        self.default = shop.settings.default_language
        self.tr = Translator(self.default)

    def _money(self, amount: int, currency: str) -> str:
        return self.tr.money(self.default, amount, currency)

    async def merchants(self, msgid: str, ref: str, *, review: bool = False, **params: object) -> None:
        tr = self.tr
        for alerts in merchant_alerts(self.shop.delivery.alerts):
            try:
                if review and "buttons" in inspect.signature(alerts.notify).parameters:
                    await alerts.notify(msgid, buttons=lambda lang: review_buttons(tr, lang, ref), ref=ref, **params)
                else:
                    await alerts.notify(msgid, ref=ref, **params)
            except Exception as exc:  # noqa: BLE001 - a notice must never break the payment
                log.warning("event=wechatpay.notice_failed error=%s", type(exc).__name__)

    async def buyer(self, order: Order, msgid: str, **params: object) -> None:
        send = self.senders.get(order.channel)
        if send is None:
            return
        lang = normalise_language(order.language, self.default)
        try:
            await send(order.chat_id, Reply(self.tr(lang, msgid, ref=order.ref, **params)))
        except Exception as exc:  # noqa: BLE001 - a notice must never break the payment
            log.warning("event=wechatpay.buyer_notice_failed order_id=%s error=%s", order.id, type(exc).__name__)

    async def held(self, order: Order, paid: int, currency: str) -> None:
        amounts = {"paid": self._money(paid, currency), "expected": self._money(order.amount, order.currency)}
        reasons = await OrderLookup(self.shop.store).review_reasons(order.id)
        await self.merchants("wxpay.alert_held", order.ref, review=True, reasons=reasons, **amounts)
        await self.buyer(order, "wxpay.held", **amounts)

    async def extra_refunded(self, order: Order, amount: int, currency: str) -> None:
        money = self._money(amount, currency)
        await self.merchants("wxpay.alert_extra_refunded", order.ref, amount=money)
        await self.buyer(order, "wxpay.extra_refunded", amount=money)
