"""Turning domain records into localised text: names, stock labels, order lines, deliveries."""

from __future__ import annotations

from fulfillment.delivery import Delivery
from fulfillment.recharge_target import masked
from handlers.types import Document, Reply
from locales import Translator
from storage.records import Order, OrderState, Product, Sku

#: above this, codes go out as a .txt document (Telegram text limit is 4096 characters)
MAX_INLINE_CODES = 20
MAX_TEXT = 3500


def product_name(p: Product, lang: str) -> str:
    return p.name_zh if lang == "zh_CN" else p.name_en


def sku_name(s: Sku, lang: str) -> str:
    return s.name_zh if lang == "zh_CN" else s.name_en


def stock_label(tr: Translator, lang: str, available: int, low: int = 5) -> str:
    if available <= 0:
        return tr(lang, "stock.sold_out")
    if available <= low:
        return tr(lang, "stock.low", count=available)
    return tr(lang, "stock.in_stock")


def order_line(tr: Translator, lang: str, order: Order, sku: Sku | None, tz: str) -> str:
    """One order in a list; a recharge order names its target masked (138****8000) and reads "recharging" while
    the supplier is crediting it."""
    name = sku_name(sku, lang) if sku else "?"
    state = tr(lang, f"state.{order.state.value}")
    if order.target:
        name = tr(lang, "recharge.order_name", name=name, target=masked(order.target))
        if order.state is OrderState.DELIVERING:
            state = tr(lang, "recharge.recharging")
    return tr(lang, "orders.line", ref=order.ref, name=name, quantity=order.quantity,
              total=tr.money(lang, order.amount, order.currency), state=state,
              when=tr.when(lang, order.created_at, tz))


def delivery_reply(tr: Translator, d: Delivery, lang: str) -> Reply:
    if d.notice and not d.codes:  # supply.*: waiting on a supplier, recharged, refunded after the supplier failed
        return Reply(tr(lang, d.notice, ref=d.order.ref, name=sku_name(d.sku, lang), target=d.order.target or "",
                        total=tr.money(lang, d.order.amount, d.order.currency)))
    if d.kind == "refunded":
        return Reply(tr(lang, "delivery.refunded", ref=d.order.ref,
                        total=tr.money(lang, d.order.amount, d.order.currency)))
    instructions = d.product.instructions_zh if lang == "zh_CN" else d.product.instructions_en
    head = tr(lang, "delivery.header" if d.kind == "deliver" else "delivery.again", ref=d.order.ref,
              name=sku_name(d.sku, lang), quantity=d.order.quantity)
    if d.interrupted and d.kind == "deliver":
        head += "\n" + tr(lang, "delivery.interrupted")
    text = head + ("\n" + tr(lang, "delivery.instructions", instructions=instructions) if instructions else "")
    if len(d.codes) > MAX_INLINE_CODES or sum(len(c) + 1 for c in d.codes) + len(text) > MAX_TEXT:
        body = "\n".join(d.codes) + "\n"
        return Reply(text + "\n" + tr(lang, "delivery.as_file", count=len(d.codes)),
                     document=Document(f"{d.order.ref}.txt", body.encode("utf-8")))
    return Reply(text, codes=list(d.codes))
