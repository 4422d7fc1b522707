"""`kamibot run` with WeChat configured, as a real process: /wechat mounted, safe-mode dialog, menu sync CLI."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time

import httpx

from tests.e2e.procs import ROOT, settings_env
from tests.fakes.loopback import free_port
from tests.fakes.wechat_api import AES_KEY, APP_ID, APP_SECRET, TOKEN, callback, message_xml, sign
from tests.wechat.conftest import ADMIN, CUSTOMER, reply_text


def _env(tmp_path, fake, port: int) -> dict[str, str]:
    return {**os.environ, **settings_env(tmp_path, f"sqlite:///{tmp_path / 'shop.db'}"), "PYTHONPATH": str(ROOT),
            "KAMIBOT_HTTP_PORT": str(port), "KAMIBOT_DEFAULT_LANGUAGE": "en", "KAMIBOT_LOG_LEVEL": "INFO",
            "KAMIBOT_WECHAT__APP_ID": APP_ID, "KAMIBOT_WECHAT__APP_SECRET": APP_SECRET,
            "KAMIBOT_WECHAT__TOKEN": TOKEN, "KAMIBOT_WECHAT__ENCODING_AES_KEY": AES_KEY,
            "KAMIBOT_WECHAT__ADMIN_OPENIDS": json.dumps([ADMIN]), "KAMIBOT_WECHAT__API_BASE_URL": fake.base_url}


async def _kamibot(env: dict[str, str], *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", *args, cwd=ROOT, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def test_run_mounts_wechat_and_answers_a_safe_mode_dialog(tmp_path, fake):
    port = free_port()
    env = _env(tmp_path, fake, port)
    proc = await _kamibot(env, "run")
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=5) as http:
            for _ in range(200):
                try:
                    await http.get("/healthz")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            ts, nonce = str(int(time.time())), "abc"
            verify = await http.get("/wechat", params={"signature": sign(TOKEN, ts, nonce), "timestamp": ts,
                                                       "nonce": nonce, "echostr": "hello-echo"})
            assert verify.text == "hello-echo"
            empty = await http.post("/wechat", params=callback("<xml/>").params, content=b"<xml/>")
            assert empty.status_code == 400  # signed, but not a message
            cb = callback(message_xml(CUSTOMER, "/stock"), safe=True)
            answer = await http.post("/wechat", params=cb.params, content=cb.body)
            assert reply_text(answer.text, safe=True) == "Unknown command. Send /start for the menu."
            cb = callback(message_xml(CUSTOMER, "menu"), safe=True, token="forged")
            assert (await http.post("/wechat", params=cb.params, content=cb.body)).status_code == 403
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 20)
    log = err.decode()
    assert "event=server.stopped" in log
    for secret in (APP_SECRET, AES_KEY, TOKEN):
        assert secret not in log


async def test_menu_sync_creates_shop_orders_help_click_menu(tmp_path, fake):
    proc = await _kamibot(_env(tmp_path, fake, free_port()), "wechat", "menu", "sync")
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert fake.menus == [{"button": [{"type": "click", "name": "Shop", "key": "shop"},
                                      {"type": "click", "name": "My orders", "key": "orders"},
                                      {"type": "click", "name": "Help", "key": "help"}]}]
    assert fake.token_fetches == 1
    assert fake.calls == ["/cgi-bin/token", "/cgi-bin/menu/create"]
    assert APP_SECRET not in err.decode() + out.decode()
