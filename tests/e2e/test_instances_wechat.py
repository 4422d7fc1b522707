"""The WeChat Official Account on two instances (issue 17): the fake WeChat server posts one user's callbacks
round-robin to both, and the numbered dialog goes on across them (each answer's numbers, remembered in the
shared database, are understood by the other instance), each message answered once."""

from __future__ import annotations

import json

import pytest

from tests.conftest import REDIS_URL
from tests.e2e import instances
from tests.e2e.telegram_process import seed
from tests.fakes.wechat_api import AES_KEY, APP_ID, APP_SECRET, TOKEN, CallbackPoster, FakeWeChat, message_xml
from tests.risk.conftest import redis_or_skip
from tests.wechat.conftest import ADMIN, CUSTOMER, reply_text


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_one_users_dialog_goes_on_across_two_instances(tmp_path, db_url):
    await redis_or_skip()
    await seed(tmp_path, db_url)
    wechat = FakeWeChat()
    await wechat.start()
    env = {"KAMIBOT_REDIS_URL": REDIS_URL, "KAMIBOT_DEFAULT_LANGUAGE": "en", "KAMIBOT_WECHAT__APP_ID": APP_ID,
           "KAMIBOT_WECHAT__APP_SECRET": APP_SECRET, "KAMIBOT_WECHAT__TOKEN": TOKEN,
           "KAMIBOT_WECHAT__ENCODING_AES_KEY": AES_KEY, "KAMIBOT_WECHAT__ADMIN_OPENIDS": json.dumps([ADMIN]),
           "KAMIBOT_WECHAT__API_BASE_URL": wechat.base_url}
    try:
        async with instances.running(tmp_path, db_url, 2, **env) as running:
            poster = CallbackPoster([f"{i.base}/wechat" for i in running])
            try:
                welcome = reply_text(await poster.post(message_xml(CUSTOMER, msg_type="event", event="subscribe")))
                answers = [reply_text(await poster.post(message_xml(CUSTOMER, "1"))) for _ in range(5)]
            finally:
                await poster.aclose()
    finally:
        await wechat.stop()
    assert "Reply 1 → 🛒 Shop" in welcome
    assert "Reply 1 → Game top-ups" in answers[0]
    assert "Genshin Impact Genesis Crystals" in answers[1]
    assert "60 crystals · CN¥6.00" in answers[2]
    assert "Reply the quantity as a number" in answers[3]
    assert "Buy 1 × 60 crystals" in answers[4]
    # one request per message, alternately to each instance, every one answered 200
    assert poster.posted == [(f"{running[n % 2].base}/wechat", 200) for n in range(6)]
