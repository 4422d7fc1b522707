"""Merchant features in WeChat: codes imported by pasting text, confirmed before anything is saved."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

from handlers.types import Incoming
from tests.wechat.conftest import ADMIN, OTHER


async def _stock(wx, pool: str) -> int:
    return {lv.pool_slug: lv.available for lv in await wx.shop.store.stock_levels()}[pool]


async def test_pasted_codes_are_imported_only_after_confirmation(wx):
    before = await _stock(wx, "genshin-60")
    prompt = await wx.say(ADMIN, "/import genshin-60 cost=420\nPASTE-AAAA-0001\nPASTE-AAAA-0002\n\nPASTE-AAAA-0003")
    assert "Import 3 pasted codes into pool genshin-60?" in prompt
    assert "Reply 1 → Confirm import" in prompt
    assert await _stock(wx, "genshin-60") == before
    done = await wx.say(ADMIN, "1")
    assert "3 imported" in done
    assert await _stock(wx, "genshin-60") == before + 3
    assert "Welcome to the shop!" in await wx.say(ADMIN, "1")  # the numbers of the prompt are gone
    assert await _stock(wx, "genshin-60") == before + 3


async def test_one_confirmation_pressed_twice_at_once_imports_once(wx):
    before = await _stock(wx, "genshin-60")
    await wx.say(ADMIN, "/import genshin-60\nTWICE-0001\nTWICE-0002")
    buttons = json.loads(await wx.shop.store.kv_get(f"wechat:buttons:{ADMIN}", datetime.now(UTC)))["n"]
    press = Incoming("wechat", ADMIN, ADMIN, button=buttons["1"])
    paste = wx.runtime.bot.paste
    answers = await asyncio.gather(paste.press(press, "en"), paste.press(press, "en"))  # e.g. two processes
    texts = sorted(a[0].text for a in answers)
    assert "2 imported" in texts[0]
    assert "no longer pending" in texts[1]
    assert await _stock(wx, "genshin-60") == before + 2


async def test_cancelled_paste_saves_nothing_and_strangers_cannot_paste(wx):
    before = await _stock(wx, "genshin-60")
    await wx.say(ADMIN, "/import genshin-60\nPASTE-BBBB-0001")
    assert "nothing was saved" in await wx.say(ADMIN, "2")
    stranger = await wx.say(OTHER, "/import genshin-60\nPASTE-CCCC-0001")
    assert stranger == "Unknown command. Send /start for the menu."
    assert await _stock(wx, "genshin-60") == before


async def test_pasted_codes_wait_sealed_never_in_clear(wx):
    await wx.say(ADMIN, "/import genshin-60\nSECRET-PASTED-CODE-1")
    dump = "\n".join(str(row) for row in await _kv_rows(wx))
    assert "SECRET-PASTED-CODE-1" not in dump
    assert "wechat:paste:" in dump


async def _kv_rows(wx):
    db = wx.shop.store
    return await db._all("SELECT key, value FROM kv")  # reading the table directly: what lies at rest
