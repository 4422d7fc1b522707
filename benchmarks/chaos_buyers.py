"""The WeChat and order-API buyers of benchmarks/chaos.py (issue 17), each spreading its requests over the
instances the way the platform's servers would, and retrying as they do when an instance is gone.

- WeChat: the fake WeChat server's CallbackPoster posts each message round-robin (a failed post goes to the next
  instance, WeChat's three retries); the buyer subscribes, replies numbers to the signed pay link, opens it inside
  WeChat (JSAPI prepay at the fake WeChat Pay), pays, and WeChat Pay posts the signed, encrypted notification
  round-robin until an instance answers 200/204 (WeChat Pay retries unanswered notifications); the code arrives
  by customer-service message at the fake WeChat server.
- Order API: signed POST /api/v1/orders with an Idempotency-Key, retried with the same key and body (freshly
  signed) on a connection error, a 5xx or IDEMPOTENCY_IN_PROGRESS, at the next instance; every 201 answer of one
  key must be the same order with the same codes.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa

from fulfillment.api_signing import IDEMPOTENCY_HEADER, Signer
from tests.fakes.loopback import free_port, serve, shut
from tests.fakes.wechat_api import AES_KEY, APP_ID, APP_SECRET, TOKEN, CallbackPoster, FakeWeChat, message_xml
from tests.fakes.wechatpay_api import FakeWeChatPay
from tests.wechat.conftest import ADMIN, reply_text
from tests.wechatpay.conftest import (
    API_V3_KEY,
    MCHID,
    MERCHANT_SERIAL,
    PUB_KEY_ID,
    WECHAT_UA,
    Keys,
    make_certificate,
    write_key_files,
)

REF = re.compile(r"K[0-9A-Z]{11}")
LINK = re.compile(r"here: (\S+/pay/wechat/\S+)")
CODE = re.compile(r"GI60-[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}|MORE-[0-9a-f]{16}")  # demo codes, seed's extra codes


class Lost(Exception):
    """The walk broke (an instance died with the message): the buyer starts over as a person would."""


class WeChatSide:
    """The fake WeChat server and the fake WeChat Pay server, and the instances' settings for both."""

    def __init__(self, data_dir: Path, public_url: str) -> None:
        platform = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.keys = Keys(rsa.generate_private_key(public_exponent=65537, key_size=2048), platform,
                         make_certificate(platform, 0x5A17))
        self.data_dir = data_dir
        self.public_url = public_url
        self.wechat = FakeWeChat()
        self.pay_port = free_port()
        self.pay = FakeWeChatPay(MCHID, APP_ID, API_V3_KEY.encode(), self.keys.merchant.public_key(),
                                 MERCHANT_SERIAL, self.keys.platform, PUB_KEY_ID,
                                 notify_url=f"{public_url}/pay/wechat/notify")
        self._pay_server: Any = None
        self.acks: list[float] = []  # seconds from the payment to the notification's acknowledgement
        self.notify_answers: dict[str, int] = {}  # status (or "refused") → count of notification posts

    async def start(self) -> None:
        await self.wechat.start()
        self._pay_server = await serve(self.pay.app(), self.pay_port)

    async def stop(self) -> None:
        await shut(*self._pay_server)
        await self.wechat.stop()

    def env(self) -> dict[str, str]:
        files = write_key_files(self.data_dir, self.keys, "public_key")
        return {"KAMIBOT_WECHAT__APP_ID": APP_ID, "KAMIBOT_WECHAT__APP_SECRET": APP_SECRET,
                "KAMIBOT_WECHAT__TOKEN": TOKEN, "KAMIBOT_WECHAT__ENCODING_AES_KEY": AES_KEY,
                "KAMIBOT_WECHAT__ADMIN_OPENIDS": json.dumps([ADMIN]),
                "KAMIBOT_WECHAT__API_BASE_URL": self.wechat.base_url,
                "KAMIBOT_WECHATPAY__MCHID": MCHID, "KAMIBOT_WECHATPAY__APP_ID": APP_ID,
                "KAMIBOT_WECHATPAY__API_V3_KEY": API_V3_KEY,
                "KAMIBOT_WECHATPAY__MERCHANT_SERIAL_NO": MERCHANT_SERIAL,
                "KAMIBOT_WECHATPAY__MERCHANT_KEY_FILE": str(files.merchant_key_file),
                "KAMIBOT_WECHATPAY__PUBLIC_KEY_ID": PUB_KEY_ID,
                "KAMIBOT_WECHATPAY__PUBLIC_KEY_FILE": str(files.public_key_file),
                "KAMIBOT_WECHATPAY__API_BASE_URL": f"http://127.0.0.1:{self.pay_port}",
                "KAMIBOT_WECHATPAY__NOTIFY_URL": self.pay.notify_url, "KAMIBOT_WECHATPAY__PUBLIC_URL": self.public_url}

    def codes_sent(self) -> list[tuple[str, str]]:
        """(code, openid) for every code in every customer-service message, repeats included."""
        return [(code, s.touser) for s in self.wechat.sent for code in CODE.findall(s.content)]

    def code_texts(self) -> list[tuple[str, str]]:
        """(openid, text) of every customer-service message, in the order sent."""
        return [(s.touser, s.content) for s in self.wechat.sent]


class RoundRobin:
    """The next instance base URL on every call."""

    def __init__(self, bases: list[str]) -> None:
        self.bases = bases
        self._n = 0

    def __call__(self) -> str:
        self._n += 1
        return self.bases[self._n % len(self.bases)]


async def wechat_buy(side: WeChatSide, poster: CallbackPoster, http: httpx.AsyncClient, nxt: RoundRobin,
                     openid: str, paid: Callable[[], None]) -> str:
    """One WeChat purchase up to the paid notification being accepted; the order ref. Raises Lost."""
    if not reply_text(await poster.post(message_xml(openid, msg_type="event", event="subscribe"))):
        raise Lost("no_reply")
    checkout = ""
    for _ in range(6):  # shop → category → product → SKU → quantity 1 → confirm → checkout
        checkout = reply_text(await poster.post(message_xml(openid, "1")))
        if not checkout:
            raise Lost("no_reply")
    found, link = REF.search(checkout), LINK.search(checkout)
    if found is None or link is None:
        raise Lost("no_pay_link")
    ref = found.group(0)
    path = link.group(1)[len(side.public_url):]
    for _ in range(20):  # the pay page, inside WeChat: JSAPI prepay for this openid
        try:
            page = await http.get(nxt() + path, headers={"User-Agent": WECHAT_UA})
        except httpx.HTTPError:
            await asyncio.sleep(0.2)
            continue
        if page.status_code == 200 and "getBrandWCPayRequest" in page.text:
            break
        await asyncio.sleep(0.2)
    else:
        raise Lost("pay_page")
    headers, body = side.pay.notification("TRANSACTION.SUCCESS", side.pay.pay(ref + "-J", openid))
    paid()
    loop = asyncio.get_running_loop()
    start = loop.time()
    for _ in range(600):  # WeChat Pay sends the notification again until it is acknowledged
        try:
            answer = await http.post(nxt() + "/pay/wechat/notify", content=body, headers=headers)
            status = str(answer.status_code)
        except httpx.HTTPError as exc:
            answer, status = None, type(exc).__name__
        side.notify_answers[status] = side.notify_answers.get(status, 0) + 1
        if answer is not None and answer.status_code in (200, 204):
            side.acks.append(loop.time() - start)
            return ref
        await asyncio.sleep(0.2)
    return ref


async def wechat_code(side: WeChatSide, ref: str, within_s: float) -> bool:
    """Whether a customer-service message with this order's code arrived within `within_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    seen = 0
    while loop.time() < deadline:
        sent = side.wechat.sent
        for s in sent[seen:]:
            if ref in s.content and CODE.search(s.content):
                return True
        seen = len(sent)
        await asyncio.sleep(0.02)
    return False


class ApiBuyer:
    """Signed orders with an Idempotency-Key, retried across instances; keeps every 201 answer per key."""

    def __init__(self, key_id: str, secret: str, sku: str, nxt: RoundRobin) -> None:
        self.signer = Signer(key_id, secret)
        self.sku = sku
        self.nxt = nxt
        self.answers: dict[str, list[dict[str, Any]]] = {}  # Idempotency-Key → every 201 body
        self.retries = 0
        self.refused: dict[str, int] = {}

    async def order(self, http: httpx.AsyncClient, within_s: float = 90.0) -> dict[str, Any] | None:
        """One order; its 201 answer, or None when it was never answered within `within_s`."""
        key = "chaos-" + secrets.token_hex(8)
        body = json.dumps({"client_order_no": key, "sku": self.sku, "quantity": 1}).encode()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while loop.time() < deadline:
            headers = {**self.signer.headers("POST", "/api/v1/orders", "", body), IDEMPOTENCY_HEADER: key,
                       "content-type": "application/json"}
            try:
                answer = await http.post(self.nxt() + "/api/v1/orders", content=body, headers=headers)
            except httpx.HTTPError:
                self.retries += 1
                await asyncio.sleep(0.1)
                continue
            if answer.status_code == 201:
                data: dict[str, Any] = answer.json()
                self.answers.setdefault(key, []).append(data)
                if secrets.randbelow(10) == 0:  # now and then the client retries a request it got an answer to
                    again = await self._again(http, key, body)
                    if again is not None:
                        self.answers[key].append(again)
                return data
            code = str(answer.json().get("code", answer.status_code)) if answer.content else str(answer.status_code)
            if answer.status_code >= 500 or answer.status_code == 409:
                self.retries += 1
                await asyncio.sleep(0.3)
                continue
            self.refused[code] = self.refused.get(code, 0) + 1
            return None
        return None

    async def _again(self, http: httpx.AsyncClient, key: str, body: bytes) -> dict[str, Any] | None:
        headers = {**self.signer.headers("POST", "/api/v1/orders", "", body), IDEMPOTENCY_HEADER: key,
                   "content-type": "application/json"}
        try:
            answer = await http.post(self.nxt() + "/api/v1/orders", content=body, headers=headers)
        except httpx.HTTPError:
            return None
        return answer.json() if answer.status_code == 201 else None

    def check(self) -> dict[str, int]:
        """Keys answered twice with another order or other codes; codes in the answers of two orders."""
        differing = sum(1 for bodies in self.answers.values()
                        if len({(b["order_no"], tuple(b.get("codes") or [])) for b in bodies}) > 1)
        owners: dict[str, set[str]] = {}
        for bodies in self.answers.values():
            for b in bodies:
                for code in b.get("codes") or []:
                    owners.setdefault(str(code.get("code") if isinstance(code, dict) else code), set()).add(
                        b["order_no"])
        return {"idempotent_retry_differs": differing,
                "code_in_two_orders": sum(1 for o in owners.values() if len(o) > 1),
                "retried_keys_checked": sum(1 for bodies in self.answers.values() if len(bodies) > 1)}

    def codes(self) -> list[str]:
        return [str(c.get("code") if isinstance(c, dict) else c) for bodies in self.answers.values()
                for c in (bodies[0].get("codes") or [])]
