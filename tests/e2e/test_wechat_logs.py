"""Secrets in logs (issue 13 §8): a whole WeChat purchase against a real `kamibot run` at log level INFO — the Official
Account callback, the signed pay link opened outside and inside WeChat, WeChat Pay's notification, the delivery —
and then every line the process wrote (stdout: uvicorn's access log; stderr: our log) is searched for the codes,
tokens (the app's and the access tokens), keys, signatures, pay-link `sig` values and the buyers' openids.
uvicorn's access log printed the whole request line, query string included, before the redaction in bot/logs.py."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx

from tests.e2e.procs import ROOT, settings_env
from tests.e2e.test_wechat_chain import CODE, PARAMS, REF, _keys, _seed
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
    write_key_files,
)


async def test_a_whole_wechat_purchase_leaves_no_secret_in_the_logs(tmp_path: Path) -> None:
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
           "KAMIBOT_WECHAT__APP_ID": APP_ID, "KAMIBOT_WECHAT__APP_SECRET": APP_SECRET,
           "KAMIBOT_WECHAT__TOKEN": TOKEN, "KAMIBOT_WECHAT__ENCODING_AES_KEY": AES_KEY,
           "KAMIBOT_WECHAT__ADMIN_OPENIDS": json.dumps([ADMIN]), "KAMIBOT_WECHAT__API_BASE_URL": wechat.base_url,
           "KAMIBOT_WECHATPAY__MCHID": MCHID, "KAMIBOT_WECHATPAY__APP_ID": APP_ID,
           "KAMIBOT_WECHATPAY__API_V3_KEY": API_V3_KEY, "KAMIBOT_WECHATPAY__MERCHANT_SERIAL_NO": MERCHANT_SERIAL,
           "KAMIBOT_WECHATPAY__MERCHANT_KEY_FILE": str(pay_settings.merchant_key_file),
           "KAMIBOT_WECHATPAY__PUBLIC_KEY_ID": PUB_KEY_ID,
           "KAMIBOT_WECHATPAY__PUBLIC_KEY_FILE": str(pay_settings.public_key_file),
           "KAMIBOT_WECHATPAY__API_BASE_URL": f"http://127.0.0.1:{pay_port}",
           "KAMIBOT_WECHATPAY__NOTIFY_URL": pay.notify_url, "KAMIBOT_WECHATPAY__PUBLIC_URL": base}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "run", cwd=ROOT, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    secrets: set[str] = {APP_SECRET, AES_KEY, TOKEN, API_V3_KEY, CUSTOMER, ADMIN}
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            for _ in range(400):
                try:
                    await http.get("/healthz")
                    break
                except httpx.TransportError:
                    assert proc.returncode is None, "kamibot run exited"
                    await asyncio.sleep(0.05)

            async def say(xml: str) -> str:
                cb = callback(xml, safe=True)
                secrets.update({cb.params["signature"], cb.params["msg_signature"], cb.params["nonce"]})
                response = await http.post("/wechat", params=cb.params, content=cb.body)
                assert response.status_code == 200
                return reply_text(response.text, safe=True)

            await say(message_xml(CUSTOMER, msg_type="event", event="subscribe"))
            for _ in range(5):  # shop → category → product → SKU → quantity 1
                await say(message_xml(CUSTOMER, "1"))
            checkout = await say(message_xml(CUSTOMER, "1"))
            ref = REF.search(checkout).group(0)
            link = re.search(r"here: (\S+)", checkout).group(1)
            query = parse_qs(urlsplit(link).query)
            secrets.update(query["sig"])
            assert (await http.get(link, headers={"User-Agent": BROWSER_UA})).status_code == 200
            jsapi = await http.get(link, headers={"User-Agent": WECHAT_UA})
            params = json.loads(PARAMS.search(jsapi.text).group(1))
            secrets.update({params["paySign"], params["package"].removeprefix("prepay_id=")})
            headers, body = pay.notification("TRANSACTION.SUCCESS", pay.pay(ref + "-J", CUSTOMER))
            secrets.update({headers["Wechatpay-Signature"], pay.transactions[ref + "-J"]["transaction_id"]})
            assert (await pay.send(headers, body)).status_code == 204
            sent = await wechat.wait_sent(1, within_s=10)
            codes = CODE.findall(sent[0].content)
            assert len(codes) == 1
            secrets.update(codes)
            assert wechat.valid_tokens
            secrets.update(wechat.valid_tokens)  # the access tokens the bot fetched and used in API URLs
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        await shut(*pay_server)
        await wechat.stop()
    text = out.decode() + err.decode()
    assert "event=server.stopped" in text, text[-3000:]
    assert f"/pay/wechat/{ref}?" in text  # uvicorn's access log is on, with the route
    assert "sig=" not in text
    assert "openid=" not in text
    assert "signature=" not in text
    leaked = sorted(s for s in secrets if s and s in text)
    assert leaked == [], [line for line in text.splitlines() if any(s in line for s in leaked)][:5]
