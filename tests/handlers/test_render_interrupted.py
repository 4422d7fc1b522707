"""A delivery sent again after an interrupted attempt (fulfillment/delivery.py, the outbox's `interrupted`) says so
in the buyer's language; a first delivery and a resend the buyer asked for do not."""

from __future__ import annotations

from dataclasses import replace

import pytest

from fulfillment.delivery import Delivery
from handlers.render import delivery_reply
from locales import Translator
from tests.storage.seed import NOW, make_shop, new_order


@pytest.mark.parametrize("lang", ["en", "zh_CN"])
async def test_the_buyer_is_told_a_repeated_delivery_is_the_same_one(store, lang):
    shop = await make_shop(store, codes=2)
    order = await store.reserve(new_order(shop.sku), NOW)
    tr = Translator()
    first = Delivery("deliver", order, shop.sku, shop.product, codes=["AAAA-1111"])
    note = tr(lang, "delivery.interrupted")
    assert note not in delivery_reply(tr, first, lang).text
    again = delivery_reply(tr, replace(first, interrupted=True), lang)
    assert note in again.text
    assert again.codes == ["AAAA-1111"]  # the same codes, nothing else
    asked = replace(first, kind="resend", interrupted=True)  # the buyer's own "send my codes again"
    assert note not in delivery_reply(tr, asked, lang).text
