"""A fake WeChat API server on 127.0.0.1 (token, customer-service send, menu create) and the WeChat side of
callbacks (signed, optionally AES-encrypted XML pushed to the bot), speaking the real wire formats.

Switches: `fail_send(errcode)` answers the next customer-service sends with an error (45015, 43004, …);
`expire_tokens()` makes every issued token answer 40001; `token_delay_s` slows token fetches so
concurrent refreshers overlap.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from defusedxml.ElementTree import fromstring
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from wechatpy.crypto import PrpCrypto, WeChatCrypto
from wechatpy.utils import WeChatSigner

from tests.fakes.loopback import free_port, serve, shut

APP_ID = "wxfake0123456789ab"
APP_SECRET = "fake-app-secret-0123456789abcdef"
TOKEN = "callbacktoken123"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"  # 43 characters, like the console's EncodingAESKey


@dataclass
class Sent:
    touser: str
    content: str
    at: float = field(default_factory=time.perf_counter, compare=False)  # arrival, for benchmarks/wechat.py (c)


@dataclass
class FakeWeChat:
    port: int = field(default_factory=free_port)
    token_fetches: int = 0
    token_delay_s: float = 0.0
    sent: list[Sent] = field(default_factory=list)
    rejected: list[tuple[str, int]] = field(default_factory=list)  # (touser, errcode) of refused sends
    menus: list[dict[str, Any]] = field(default_factory=list)
    valid_tokens: set[str] = field(default_factory=set)
    calls: list[str] = field(default_factory=list)  # every API path called, in order
    send_faults: list[int] = field(default_factory=list)
    _server: Any = None
    _task: Any = None
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = Starlette(routes=[Route("/cgi-bin/token", self._token),
                                Route("/cgi-bin/message/custom/send", self._send, methods=["POST"]),
                                Route("/cgi-bin/menu/create", self._menu, methods=["POST"])])
        self._server, self._task = await serve(app, self.port)

    async def stop(self) -> None:
        await shut(self._server, self._task)

    # -- switches -------------------------------------------------------------------------------
    def fail_send(self, errcode: int, times: int = 1) -> None:
        self.send_faults += [errcode] * times

    def expire_tokens(self) -> None:
        self.valid_tokens.clear()

    async def wait_sent(self, count: int, within_s: float = 5.0) -> list[Sent]:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: len(self.sent) >= count), within_s)
        return self.sent

    def to(self, openid: str) -> list[str]:
        return [s.content for s in self.sent if s.touser == openid]

    # -- the API --------------------------------------------------------------------------------
    async def _token(self, request: Request) -> JSONResponse:
        self.calls.append(request.url.path)
        q = request.query_params
        if q.get("grant_type") != "client_credential" or q.get("appid") != APP_ID or q.get("secret") != APP_SECRET:
            return JSONResponse({"errcode": 40125, "errmsg": "invalid appsecret"})
        self.token_fetches += 1
        if self.token_delay_s:
            await asyncio.sleep(self.token_delay_s)
        token = "ACCESS_" + secrets.token_hex(8)
        self.valid_tokens.add(token)
        return JSONResponse({"access_token": token, "expires_in": 7200})

    def _authorised(self, request: Request) -> bool:
        return request.query_params.get("access_token", "") in self.valid_tokens

    async def _send(self, request: Request) -> JSONResponse:
        self.calls.append(request.url.path)
        if not self._authorised(request):
            return JSONResponse({"errcode": 40001, "errmsg": "invalid credential"})
        body = json.loads(await request.body())
        touser = body.get("touser", "")
        if self.send_faults:
            code = self.send_faults.pop(0)
            self.rejected.append((touser, code))
            return JSONResponse({"errcode": code, "errmsg": "fault injected"})
        content = body["text"]["content"]
        if body.get("msgtype") != "text" or len(content.encode("utf-8")) > 2048:
            return JSONResponse({"errcode": 45002, "errmsg": "content size out of limit"})
        async with self._changed:
            self.sent.append(Sent(touser, content))
            self._changed.notify_all()
        return JSONResponse({"errcode": 0, "errmsg": "ok"})

    async def _menu(self, request: Request) -> JSONResponse:
        self.calls.append(request.url.path)
        if not self._authorised(request):
            return JSONResponse({"errcode": 40001, "errmsg": "invalid credential"})
        self.menus.append(json.loads((await request.body()).decode("utf-8")))
        return JSONResponse({"errcode": 0, "errmsg": "ok"})


# -- the callback side: what WeChat's servers POST to /wechat -------------------------------------
def sign(*parts: str) -> str:
    signer = WeChatSigner()
    signer.add_data(*parts)
    return str(signer.signature)


def message_xml(openid: str, content: str = "", *, msg_type: str = "text", msg_id: int | None = None,
                event: str = "", event_key: str = "", create_time: int | None = None) -> str:
    fields = {"ToUserName": "gh_fakeaccount", "FromUserName": openid,
              "CreateTime": str(create_time or int(time.time())), "MsgType": msg_type}
    if msg_type == "text":
        fields["Content"] = content
    if msg_type == "event":
        fields["Event"] = event
        if event_key:
            fields["EventKey"] = event_key
    elif msg_type == "location":
        fields |= {"Location_X": "23.1", "Location_Y": "113.3", "Scale": "20", "Label": "somewhere"}
    elif msg_type in ("image", "voice"):
        fields |= {"MediaId": "media123", "PicUrl": "http://example.invalid/p.jpg", "Format": "amr"}
    if msg_type != "event":
        fields["MsgId"] = str(msg_id if msg_id is not None else secrets.randbelow(10**15))
    inner = "".join(f"<{k}>{v}</{k}>" if k in ("CreateTime", "MsgId") else f"<{k}><![CDATA[{v}]]></{k}>"
                    for k, v in fields.items())
    return f"<xml>{inner}</xml>"


@dataclass
class Callback:
    """A callback as WeChat sends it: query string and body; `safe` encrypts like safe mode."""

    params: dict[str, str]
    body: bytes


def callback(xml: str, *, token: str = TOKEN, safe: bool = False, aes_key: str = AES_KEY,
             app_id: str = APP_ID, openid: str = "") -> Callback:
    timestamp, nonce = str(int(time.time())), secrets.token_hex(5)
    params = {"signature": sign(token, timestamp, nonce), "timestamp": timestamp, "nonce": nonce}
    if openid:
        params["openid"] = openid
    if not safe:
        return Callback(params, xml.encode("utf-8"))
    encrypt = PrpCrypto(base64.b64decode(aes_key + "=")).encrypt(xml, app_id).decode()
    params |= {"encrypt_type": "aes", "msg_signature": sign(token, timestamp, nonce, encrypt)}
    body = f"<xml><ToUserName><![CDATA[gh_fakeaccount]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
    return Callback(params, body.encode("utf-8"))


def open_reply(body: str, *, token: str = TOKEN, aes_key: str = AES_KEY,
               app_id: str = APP_ID) -> str:
    """An encrypted passive reply, checked and decrypted as WeChat does."""
    root = fromstring(body)
    return str(WeChatCrypto(token, aes_key, app_id).decrypt_message(
        {"Encrypt": root.findtext("Encrypt")}, root.findtext("MsgSignature"), root.findtext("TimeStamp"),
        root.findtext("Nonce")))


class CallbackPoster:
    """The WeChat server's side of callbacks to several instances: each callback goes to the next URL,
    round-robin (the load balancer of the several-instances tests). WeChat waits 5 s for the answer and
    retries three times when there is none or it is not a 200 (https://developers.weixin.qq.com/doc/offiaccount/
    Message_Management/Passive_user_reply_message.html): the same request, here to the next instance."""

    def __init__(self, urls: list[str], *, token: str = TOKEN, safe: bool = False, wait_s: float = 5.0) -> None:
        import httpx

        self.urls = list(urls)
        self.token = token
        self.safe = safe
        self.wait_s = wait_s
        self.posted: list[tuple[str, int]] = []  # (url, status) of every request
        self._next = 0
        self._http = httpx.AsyncClient(timeout=wait_s)

    async def post(self, xml: str) -> str:
        """The body of the first 200 answer ("" when all four attempts failed)."""
        import httpx

        cb = callback(xml, token=self.token, safe=self.safe)
        for _ in range(4):
            url = self.urls[self._next % len(self.urls)]
            self._next += 1
            try:
                response = await self._http.post(url, params=cb.params, content=cb.body)
            except httpx.HTTPError:
                self.posted.append((url, 0))
                continue
            self.posted.append((url, response.status_code))
            if response.status_code == 200:
                return response.text
        return ""

    async def aclose(self) -> None:
        await self._http.aclose()
