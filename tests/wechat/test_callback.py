"""POST/GET /wechat: authentication, safe XML, modes, de-duplication, events and message types."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

from tests.fakes.wechat_api import AES_KEY, callback, message_xml, sign
from tests.wechat.conftest import CUSTOMER, reply_text

NOW = datetime.now(UTC)


async def _unclaimed(wx, msg_id: int) -> bool:
    """True when no process has taken this MsgId: the message was not processed."""
    return await wx.shop.store.claim_once("wechat.callback", f"msg:{msg_id}", NOW + timedelta(minutes=1),
                                          datetime.now(UTC))


async def test_url_verification_echoes_echostr_only_with_the_right_signature(wx):
    ts, nonce = str(int(time.time())), "n0nce"
    good = {"signature": sign("callbacktoken123", ts, nonce), "timestamp": ts, "nonce": nonce, "echostr": "e123"}
    response = await wx.client.get("/wechat", params=good)
    assert (response.status_code, response.text) == (200, "e123")
    forged = good | {"signature": sign("another-token", ts, nonce)}
    assert (await wx.client.get("/wechat", params=forged)).status_code == 403
    assert (await wx.client.get("/wechat", params={"echostr": "e123"})).status_code == 403


async def test_forged_signature_is_refused_and_nothing_is_processed(wx):
    cb = callback(message_xml(CUSTOMER, "menu", msg_id=111), token="not-our-token")
    response = await wx.post(cb)
    assert response.status_code == 403
    assert response.text == ""
    assert await _unclaimed(wx, 111)
    assert await wx.shop.store.kv_get(f"wechat:buttons:{CUSTOMER}", datetime.now(UTC)) is None


async def test_a_correctly_signed_but_old_callback_is_refused(wx):
    xml = message_xml(CUSTOMER, "menu", msg_id=120)
    old, nonce = str(int(time.time()) - 3600), "n1"
    params = {"signature": sign("callbacktoken123", old, nonce), "timestamp": old, "nonce": nonce}
    assert (await wx.client.post("/wechat", params=params, content=xml.encode())).status_code == 403
    assert await _unclaimed(wx, 120)


async def test_forged_msg_signature_in_safe_mode_is_refused(wx):
    cb = callback(message_xml(CUSTOMER, "menu", msg_id=112), safe=True)
    cb.params["msg_signature"] = sign("not-our-token", cb.params["timestamp"], cb.params["nonce"], "x")
    assert (await wx.post(cb)).status_code == 403
    assert await _unclaimed(wx, 112)


async def test_message_encrypted_with_another_aes_key_is_refused(wx):
    other_key = AES_KEY[::-1]
    cb = callback(message_xml(CUSTOMER, "menu", msg_id=113), safe=True, aes_key=other_key)
    assert (await wx.post(cb)).status_code == 403
    assert await _unclaimed(wx, 113)


async def test_message_for_another_app_id_is_refused(wx):
    cb = callback(message_xml(CUSTOMER, "menu", msg_id=114), safe=True, app_id="wxsomeoneelse000000")
    assert (await wx.post(cb)).status_code == 403
    assert await _unclaimed(wx, 114)


async def test_safe_mode_reply_is_encrypted_and_signed(wx):
    text = await wx.say(CUSTOMER, "menu", safe=True)
    assert text.startswith("Welcome to the shop!")
    assert "Reply 1 → 🛒 Shop" in text


async def test_compatible_mode_message_carries_plain_fields_and_encrypt(wx):
    xml = message_xml(CUSTOMER, "shop", msg_id=115)
    cb = callback(xml, safe=True)
    encrypt = re.search(r"<Encrypt><!\[CDATA\[(.*)\]\]></Encrypt>", cb.body.decode()).group(1)
    cb.body = xml.replace("</xml>", f"<Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>").encode()
    response = await wx.post(cb)
    assert response.status_code == 200
    assert "Game top-ups" in reply_text(response.text, safe=True)


async def test_plaintext_mode_works_without_encrypt_type(wx):
    assert "Game top-ups" in await wx.say(CUSTOMER, "商店")


async def test_xml_with_a_dtd_or_entities_is_rejected(wx):
    bomb = ('<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">'
            '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;">]>'
            f'<xml><ToUserName>gh</ToUserName><FromUserName>{CUSTOMER}</FromUserName><CreateTime>1</CreateTime>'
            '<MsgType>text</MsgType><Content>&c;</Content><MsgId>116</MsgId></xml>')
    assert (await wx.post(callback(bomb))).status_code == 400
    external = ('<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                f'<xml><FromUserName>{CUSTOMER}</FromUserName><MsgType>text</MsgType><Content>&x;</Content>'
                '<MsgId>117</MsgId></xml>')
    assert (await wx.post(callback(external))).status_code == 400
    assert await _unclaimed(wx, 116)
    assert await _unclaimed(wx, 117)


async def test_xml_bomb_inside_the_encrypted_envelope_is_rejected(wx):
    bomb = ('<!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
            f'<xml><FromUserName>{CUSTOMER}</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType>'
            '<Content>&b;</Content><MsgId>118</MsgId></xml>')
    assert (await wx.post(callback(bomb, safe=True))).status_code == 400
    assert await _unclaimed(wx, 118)


async def test_oversized_and_malformed_bodies_are_rejected(wx):
    big = message_xml(CUSTOMER, "x" * (65 * 1024), msg_id=119)
    assert (await wx.post(callback(big))).status_code == 413
    assert (await wx.post(callback("<xml><unclosed></xml>"))).status_code == 400
    assert (await wx.post(callback("not xml at all"))).status_code == 400
    assert (await wx.post(callback("<xml/>"))).status_code == 400
    assert (await wx.post(callback("<notxml><MsgType>text</MsgType></notxml>"))).status_code == 400
    odd = f"<xml><FromUserName>{CUSTOMER}</FromUserName><MsgType>text</MsgType><CreateTime>x</CreateTime></xml>"
    assert (await wx.post(callback(odd))).status_code == 400  # no MsgId and no usable time: cannot be deduped
    assert await _unclaimed(wx, 119)


async def test_unknown_message_types_get_a_polite_help_reply(wx):
    for kind in ("image", "voice", "location"):
        text = await wx.push(message_xml(CUSTOMER, msg_type=kind))
        assert text.startswith("Sorry, I can only read text messages."), kind
    assert await wx.shop.store.orders_for_user("wechat", CUSTOMER, 10, 0) == []


async def test_subscribe_welcomes_with_the_numbered_menu_and_click_events_open_it(wx):
    text = await wx.event(CUSTOMER, "subscribe")
    assert text.startswith("Thanks for following!")
    assert "Reply 1 → 🛒 Shop" in text
    assert "Reply 2 → 📦 My orders" in text
    assert "Game top-ups" in await wx.say(CUSTOMER, "1")
    assert "Game top-ups" in await wx.event(CUSTOMER, "CLICK", "shop")
    assert "no orders" in (await wx.event(CUSTOMER, "CLICK", "orders")).lower()
    assert "Pick a product" in await wx.event(CUSTOMER, "CLICK", "help")


async def test_unsubscribe_is_answered_with_nothing_and_marks_the_user_unreachable(wx):
    await wx.event(CUSTOMER, "subscribe")
    assert CUSTOMER in [u for u, _ in await wx.shop.store.reachable_users("wechat", "", 10)]
    assert await wx.event(CUSTOMER, "unsubscribe") == ""
    assert CUSTOMER not in [u for u, _ in await wx.shop.store.reachable_users("wechat", "", 10)]
    await wx.push(message_xml(CUSTOMER, msg_type="event", event="subscribe", create_time=int(time.time()) + 1))
    assert CUSTOMER in [u for u, _ in await wx.shop.store.reachable_users("wechat", "", 10)]


async def test_scanning_a_product_qr_code_to_follow_opens_that_product(wx):
    sku = await wx.shop.store.sku_by_slug("genshin-60")
    text = await wx.event(CUSTOMER, "subscribe", f"qrscene_sku_{sku.id}")
    assert text.startswith("Thanks for following!")
    assert "How many? (1–5)" in text


async def test_keywords_in_chinese_and_english_press_the_menu_buttons(wx):
    assert "Game top-ups" in await wx.say(CUSTOMER, "SHOP")
    assert "Welcome to the shop!" in await wx.say(CUSTOMER, "菜单")
    assert "Pick a product" in await wx.say(CUSTOMER, "帮助")
    assert "no orders" in (await wx.say(CUSTOMER, "订单")).lower()


async def test_same_msg_id_three_times_is_answered_once(wx):
    xml = message_xml(CUSTOMER, "menu", msg_id=4242)
    answers = [await wx.push(xml) for _ in range(3)]
    assert answers[0].startswith("Welcome to the shop!")
    assert answers[1:] == ["", ""]


async def test_same_event_retried_is_answered_once(wx):
    xml = message_xml(CUSTOMER, msg_type="event", event="subscribe", create_time=1_700_000_000)
    answers = [await wx.push(xml) for _ in range(3)]
    assert answers[0].startswith("Thanks for following!")
    assert answers[1:] == ["", ""]


async def test_other_events_are_acknowledged_silently(wx):
    for event in ("VIEW", "LOCATION", "TEMPLATESENDJOBFINISH", "some_future_event"):
        assert await wx.event(CUSTOMER, event, "x") == "", event
    assert await wx.event(CUSTOMER, "CLICK", "not-a-menu-key") == ""
