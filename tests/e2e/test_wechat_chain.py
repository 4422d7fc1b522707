"""The whole WeChat chain against a real `kamibot run` process, wired by serve() with BOTH the Official Account and
WeChat Pay v3 configured from environment settings, the fake WeChat API and the fake WeChat Pay server on
127.0.0.1: subscribe (safe mode) → menu → browse by numbers → buy → signed pay link → pay page (Native QR and
JSAPI) → signed, encrypted notification → the code by customer-service message, exactly once."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from bot.composition import build_shop
from bot.demo import seed_demo
from bot.settings import Settings
from fulfillment.wechatpay_crypto import rsa_verify
from tests.e2e.procs import ROOT, settings_env
from tests.fakes.loopback import free_port, serve, shut
from tests.fakes.wechat_api import AES_KEY, APP_ID, APP_SECRET, TOKEN, FakeWeChat, callback, message_xml
from tests.fakes.wechatpay_api import FakeWeChatPay
from tests.wechat.conftest import ADMIN, CUSTOMER, reply_text
from tests.wechatpay.conftest import (
    API_V3_KEY,
    BROWSER_UA,
    MCHID,
    MERCHANT_SERIAL,
    PUB_KEY_ID,
    WECHAT_UA,
    Keys,
    make_certificate,
    write_key_files,
)

REF = re.compile(r"K[0-9A-Z]{11}")
CODE = re.compile(r"GI60-[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}")
PARAMS = re.compile(r"var params=(\{.*?\});")


@dataclass
class Chain:
    base: str
    http: httpx.AsyncClient
    wechat: FakeWeChat
    pay: FakeWeChatPay
    keys: Keys
    proc: asyncio.subprocess.Process

    async def push(self, xml: str) -> str:
        """WeChat's server pushes one message in safe mode; the decrypted passive reply's text."""
        cb = callback(xml, safe=True)
        assert "encrypt_type" in cb.params
        response = await self.http.post("/wechat", params=cb.params, content=cb.body)
        assert response.status_code == 200, response.status_code
        return reply_text(response.text, safe=True)

    async def say(self, text: str, openid: str = CUSTOMER) -> str:
        return await self.push(message_xml(openid, text))

    async def outbox_drained(self) -> None:
        """/healthz counts undelivered outbox rows of the running process: wait until there are none."""
        for _ in range(200):
            if (await self.http.get("/healthz")).json()["outbox_pending"] == 0:
                return
            await asyncio.sleep(0.05)
        raise AssertionError("the outbox never drained")


def _keys() -> Keys:
    platform = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return Keys(rsa.generate_private_key(public_exponent=65537, key_size=2048), platform,
                make_certificate(platform, 0x5A17))


async def _seed(tmp_path: Path, db_url: str) -> None:
    """The demo catalogue (prices in fen for the wechat channel) and its codes, before the bot starts."""
    shop = await build_shop(Settings(data_dir=tmp_path, database_url=db_url))
    try:
        assert await seed_demo(shop)
    finally:
        await shop.close()


@pytest.fixture
async def chain(tmp_path: Path) -> AsyncIterator[Chain]:
    keys = _keys()
    db_url = f"sqlite:///{tmp_path / 'shop.db'}"
    await _seed(tmp_path, db_url)
    wechat = FakeWeChat()
    await wechat.start()
    port, pay_port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    pay_settings = write_key_files(tmp_path, keys, "public_key")
    pay = FakeWeChatPay(MCHID, APP_ID, API_V3_KEY.encode(), keys.merchant.public_key(), MERCHANT_SERIAL,
                        keys.platform, PUB_KEY_ID, notify_url=f"{base}/pay/wechat/notify")
    pay_server = await serve(pay.app(), pay_port)
    env = {**os.environ, **settings_env(tmp_path, db_url), "PYTHONPATH": str(ROOT), "KAMIBOT_HTTP_PORT": str(port),
           "KAMIBOT_DEFAULT_LANGUAGE": "en", "KAMIBOT_LOG_LEVEL": "INFO",
           # the Official Account, as an operator configures it
           "KAMIBOT_WECHAT__APP_ID": APP_ID, "KAMIBOT_WECHAT__APP_SECRET": APP_SECRET,
           "KAMIBOT_WECHAT__TOKEN": TOKEN, "KAMIBOT_WECHAT__ENCODING_AES_KEY": AES_KEY,
           "KAMIBOT_WECHAT__ADMIN_OPENIDS": json.dumps([ADMIN]), "KAMIBOT_WECHAT__API_BASE_URL": wechat.base_url,
           # WeChat Pay v3 under the same AppID, "WeChat Pay public key" mode
           "KAMIBOT_WECHATPAY__MCHID": MCHID, "KAMIBOT_WECHATPAY__APP_ID": APP_ID,
           "KAMIBOT_WECHATPAY__API_V3_KEY": API_V3_KEY, "KAMIBOT_WECHATPAY__MERCHANT_SERIAL_NO": MERCHANT_SERIAL,
           "KAMIBOT_WECHATPAY__MERCHANT_KEY_FILE": str(pay_settings.merchant_key_file),
           "KAMIBOT_WECHATPAY__PUBLIC_KEY_ID": PUB_KEY_ID,
           "KAMIBOT_WECHATPAY__PUBLIC_KEY_FILE": str(pay_settings.public_key_file),
           "KAMIBOT_WECHATPAY__API_BASE_URL": f"http://127.0.0.1:{pay_port}",
           "KAMIBOT_WECHATPAY__NOTIFY_URL": pay.notify_url, "KAMIBOT_WECHATPAY__PUBLIC_URL": base}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "run", cwd=ROOT, env=env,
                                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    log = b""
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            for _ in range(400):
                try:
                    await http.get("/healthz")
                    break
                except httpx.TransportError:
                    assert proc.returncode is None, "kamibot run exited"
                    await asyncio.sleep(0.05)
            yield Chain(base, http, wechat, pay, keys, proc)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        _, log = await asyncio.wait_for(proc.communicate(), 30)
        await shut(*pay_server)
        await wechat.stop()
    text = log.decode()
    assert "event=server.stopped" in text, text[-3000:]
    for secret in (APP_SECRET, AES_KEY, TOKEN, API_V3_KEY):
        assert secret not in text


async def test_subscribe_browse_buy_pay_page_notify_delivers_the_code_once(chain):
    welcome = await chain.push(message_xml(CUSTOMER, msg_type="event", event="subscribe"))
    assert welcome.startswith("Thanks for following!")
    assert "Reply 1 → 🛒 Shop" in welcome
    categories = await chain.say("1")
    assert "Reply 1 → Game top-ups" in categories
    products = await chain.say("1")
    assert "Genshin Impact Genesis Crystals" in products
    skus = await chain.say("1")
    assert "60 crystals · CN¥6.00" in skus
    quantity = await chain.say("1")
    assert "Reply the quantity as a number" in quantity
    confirm = await chain.say("1")
    assert "Buy 1 × 60 crystals" in confirm
    checkout = await chain.say("1")

    # the checkout reply carries the signed, expiring link to this server's pay page
    ref = REF.search(checkout).group(0)
    link = re.search(r"Pay CN¥6\.00 here: (\S+)", checkout).group(1)
    assert link.startswith(f"{chain.base}/pay/wechat/{ref}?exp=")
    assert "&sig=" in link
    assert chain.pay.transactions == {}  # no prepay before the page is opened

    # outside WeChat: a Native payment QR code
    native = await chain.http.get(link, headers={"User-Agent": BROWSER_UA})
    assert native.status_code == 200
    assert "<svg" in native.text
    assert ref in native.text
    tx = chain.pay.transactions[ref + "-N"]  # one out_trade_no per order and trade type
    assert (tx["trade_type"], tx["amount"]["total"], tx["appid"], tx["mchid"]) == ("NATIVE", 600, APP_ID, MCHID)
    # inside WeChat: JSAPI for the chat's openid, signed with the merchant key
    jsapi = await chain.http.get(link, headers={"User-Agent": WECHAT_UA})
    assert jsapi.status_code == 200
    assert "getBrandWCPayRequest" in jsapi.text
    params = json.loads(PARAMS.search(jsapi.text).group(1))
    assert params["appId"] == APP_ID
    assert params["package"] == "prepay_id=" + chain.pay.transactions[ref + "-J"]["prepay_id"]
    assert chain.pay.duplicates == []  # WeChat Pay never saw one out_trade_no under two trade types
    message = f"{params['appId']}\n{params['timeStamp']}\n{params['nonceStr']}\n{params['package']}\n"
    assert rsa_verify(chain.keys.merchant.public_key(), message, params["paySign"])
    assert chain.pay.rejected == []  # every request the bot made carried a valid merchant signature
    # a tampered link is refused
    assert (await chain.http.get(link.replace("sig=", "sig=A"))).status_code == 403

    # the customer pays: WeChat Pay sends the signed, encrypted notification to the bot's notify URL
    assert chain.wechat.to(CUSTOMER) == []  # every answer so far was a passive reply
    headers, body = chain.pay.notification("TRANSACTION.SUCCESS", chain.pay.pay(ref + "-J", CUSTOMER))
    first = await chain.pay.send(headers, body)
    assert first.status_code in (200, 204), first.text
    sent = await chain.wechat.wait_sent(1, within_s=10)
    assert [s.touser for s in sent] == [CUSTOMER]
    codes = CODE.findall(sent[0].content)
    assert len(codes) == 1
    assert ref in sent[0].content
    assert "How to redeem" in sent[0].content

    # the same notification again (the very same bytes: a replay), and WeChat Pay's retry of it (fresh signature,
    # same transaction): neither sends a second message; the replay is answered success without being processed
    replay = await chain.pay.send(headers, body)
    assert replay.status_code == 204
    retry = await chain.pay.send(*chain.pay.notification("TRANSACTION.SUCCESS", chain.pay.transactions[ref + "-J"]))
    assert retry.status_code in (200, 204), retry.text
    await chain.outbox_drained()
    await asyncio.sleep(0.6)  # three ticks of the delivery worker (every 0.2 s) after the retry
    assert chain.wechat.to(CUSTOMER) == [sent[0].content]
    assert [call for call in chain.wechat.calls if call.endswith("/custom/send")] == ["/cgi-bin/message/custom/send"]

    # the order is delivered: My orders shows it, and its codes are the same ones
    orders = await chain.say("orders")
    assert ref in orders
    assert CODE.findall(await chain.say("1")) == codes
