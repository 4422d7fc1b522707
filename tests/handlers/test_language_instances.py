"""A language chosen through one instance is followed by another (handlers/context.py: the stored choice is read
again after LANGUAGE_TTL_S), on SQLite and PostgreSQL."""

from __future__ import annotations

from bot.composition import build_context, build_shop
from handlers.context import LANGUAGE_TTL_S
from tests.fulfillment.conftest import settings_for


async def test_a_choice_made_on_another_instance_is_followed_within_the_ttl(store, tmp_path):
    shop = await build_shop(settings_for(tmp_path), store=store)
    first, second = build_context(shop), build_context(shop)  # two processes' caches over one database
    key = ("telegram", "u7")
    await first.choose_language("telegram", "u7", "c7", "en")
    await second.load_language(*key)
    assert second.language(*key, "zh-hans") == "en"
    await first.choose_language("telegram", "u7", "c7", "zh_CN")
    await second.load_language(*key)
    assert second.language(*key, "en") == "en"  # read less than LANGUAGE_TTL_S ago: one read per period
    second.language_read[key] -= LANGUAGE_TTL_S  # the period has passed
    await second.load_language(*key)
    assert second.language(*key, "en") == "zh_CN"
    assert first.language("telegram", "nobody", "en") == "en"  # no choice: the platform's language
