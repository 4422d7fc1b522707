"""WeChat Pay APIv3: a small async client (httpx, base URL configurable) and the `wechatpay` payment provider.

Our own client rather than the `wechatpayv3` package: that package hard-codes the gateway URL, its default
client is synchronous (`requests`), it logs request headers and bodies at debug level, and in certificate mode
it downloads certificates while being constructed. The wire formats below follow its `transaction.py`
and the APIv3 reference (https://pay.weixin.qq.com/doc/v3/merchant/4012791856).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa

from fulfillment.delivery import RetryLater
from fulfillment.wechatpay_crypto import PlatformKeys, SignatureError, authorization, verify_signed
from storage.records import Order

log = logging.getLogger("kamibot.wechatpay")
OwnPayment = Callable[[int], Awaitable[tuple[str, str] | None]]
DEFAULT_BASE_URL = "https://api.mch.weixin.qq.com"
REFUND_PROCESSING_RETRY_S = 60.0


@dataclass(frozen=True)
class WeChatPayConfig:
    """Everything the client needs; built by bot/ from settings. Secrets are kept out of repr."""

    mchid: str
    app_id: str
    api_v3_key: bytes = field(repr=False)
    merchant_serial_no: str
    merchant_key: rsa.RSAPrivateKey = field(repr=False)
    platform_keys: PlatformKeys = field(repr=False)
    notify_url: str
    base_url: str = DEFAULT_BASE_URL
    currency: str = "CNY"
    timeout_s: float = 10.0


class WeChatPayError(Exception):
    """WeChat Pay answered with an error (`code` is WeChat's, e.g. ORDERPAID) or an unverifiable response."""

    def __init__(self, status: int, code: str, message: str = "") -> None:
        super().__init__(f"wechatpay {status} {code}: {message}"[:300])
        self.status = status
        self.code = code


#: out_trade_no suffix per trade type. WeChat Pay accepts one out_trade_no in one payment scenario only and
#: refuses a second prepay of it under another trade type ("201 商户订单号重复"), so an order has one trade
#: number per type: `{ref}-J` (JSAPI, inside WeChat) and `{ref}-N` (Native QR). Order refs are 12 characters of
#: [2-9A-Z] (storage new_ref), so a trade number is 14 characters of [A-Za-z0-9_-|*], inside the 6-32 rule.
TRADE_SUFFIX = {"jsapi": "-J", "native": "-N"}


def out_trade_no(ref: str, kind: str) -> str:
    """The out_trade_no of an order for one trade type ("jsapi" or "native")."""
    return ref + TRADE_SUFFIX[kind]


def order_ref_of(trade_no: str) -> str:
    """The order ref behind an out_trade_no (a bare ref too: prepays made before trade numbers had types)."""
    for suffix in TRADE_SUFFIX.values():
        if trade_no.endswith(suffix):
            return trade_no[: -len(suffix)]
    return trade_no


def sibling_trade_nos(trade_no: str) -> list[str]:
    """The order's other trade numbers (to close once this one is paid)."""
    ref = order_ref_of(trade_no)
    return [n for n in (ref, *(ref + s for s in TRADE_SUFFIX.values())) if n != trade_no]


def out_refund_no(order: Order) -> str:
    """One refund per order (the outbox holds one refund row per order), so retries reuse this number."""
    return "R" + order.ref


def extra_refund_no(transaction_id: str) -> str:
    """The refund of a payment that is not the order's own (a second payment): keyed by its transaction, so
    whichever path refunds it (the notification, the job, a retry) asks WeChat Pay for the same refund."""
    return "D" + transaction_id


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


class WeChatPayClient:
    """Signed requests to APIv3; every 2xx response's signature is verified before it is believed."""

    def __init__(self, config: WeChatPayConfig, http: httpx.AsyncClient | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.config = config
        self._http = http
        self._own_http = http is None
        self.clock = clock

    async def aclose(self) -> None:
        if self._own_http and self._http is not None:
            await self._http.aclose()
            self._http = None

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self.config.timeout_s)
        return self._http

    async def _send(self, method: str, path: str, text: str) -> httpx.Response:
        cfg = self.config
        now = self.clock()
        headers = {
            "Authorization": authorization(cfg.mchid, cfg.merchant_serial_no, cfg.merchant_key, method, path, text,
                                           int(now.timestamp())),
            "Accept": "application/json",
            "Content-Type": "application/json",
            "User-Agent": "kamibot-wechatpay/1",
        }
        response = await self._client().request(method, cfg.base_url.rstrip("/") + path, content=text.encode(),
                                                headers=headers)
        if response.status_code >= 300:
            code, message = "HTTP_ERROR", ""
            try:
                data = response.json()
                code, message = str(data.get("code", code)), str(data.get("message", ""))
            except (ValueError, AttributeError):
                pass
            raise WeChatPayError(response.status_code, code, message)
        return response

    async def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        text = json.dumps(body, ensure_ascii=False, separators=(",", ":")) if body is not None else ""
        response = await self._send(method, path, text)
        try:
            verify_signed(self.config.platform_keys, response.headers, response.text, self.clock())
        except SignatureError as exc:
            raise WeChatPayError(response.status_code, "RESPONSE_SIGNATURE", str(exc)) from None
        if not response.content:
            return {}
        data = response.json()
        if not isinstance(data, dict):
            raise WeChatPayError(response.status_code, "BAD_RESPONSE", "not a JSON object")
        return data

    async def trade_bill(self, day: date) -> bytes:
        """The SUCCESS trade bill of one day (GET /v3/bill/tradebill, then its download_url), uncompressed.

        The file itself is not signed: its SHA1 from the signed answer is checked instead
        (https://pay.weixin.qq.com/docs/merchant/apis/native-payment/get-trade-bill.html). Only a download URL on
        the configured gateway is followed (our Authorization header goes nowhere else)."""
        info = await self.request("GET", f"/v3/bill/tradebill?bill_date={day.isoformat()}&bill_type=SUCCESS")
        url, base = str(info.get("download_url", "")), self.config.base_url.rstrip("/")
        if not url.startswith(base + "/"):
            raise WeChatPayError(200, "BILL_URL", "download_url is not on the WeChat Pay gateway")
        raw = (await self._send("GET", url[len(base):], "")).content
        if str(info.get("hash_type", "")).upper() != "SHA1" or not hmac.compare_digest(
                hashlib.sha1(raw).hexdigest(), str(info.get("hash_value", "")).lower()):  # noqa: S324 - WeChat's
            raise WeChatPayError(200, "BILL_HASH", "the bill does not match its hash")
        return raw

    async def trade_bill_gzip(self, day: date, bill_type: str = "ALL") -> tuple[bytes, str]:
        """One day's trade bill as downloaded with tar_type=GZIP, and the SHA1 of the *uncompressed* bill from the
        signed answer ("原始账单(gzip需要解压缩)的摘要值", https://pay.weixin.qq.com/doc/v3/merchant/4012556654); the
        caller checks it while reading. Only a download URL on the configured gateway is followed."""
        info = await self.request(
            "GET", f"/v3/bill/tradebill?bill_date={day.isoformat()}&bill_type={quote(bill_type)}&tar_type=GZIP")
        url, base = str(info.get("download_url", "")), self.config.base_url.rstrip("/")
        if not url.startswith(base + "/"):
            raise WeChatPayError(200, "BILL_URL", "download_url is not on the WeChat Pay gateway")
        if str(info.get("hash_type", "")).upper() != "SHA1":
            raise WeChatPayError(200, "BILL_HASH", "the bill's hash is not SHA1")
        return (await self._send("GET", url[len(base):], "")).content, str(info.get("hash_value", "")).lower()

    def _order_body(self, order: Order, kind: str, description: str) -> dict[str, Any]:
        cfg = self.config
        return {"appid": cfg.app_id, "mchid": cfg.mchid, "description": description[:127] or order.ref,
                "out_trade_no": out_trade_no(order.ref, kind), "time_expire": rfc3339(order.expires_at),
                "notify_url": cfg.notify_url, "amount": {"total": order.amount, "currency": order.currency}}

    async def prepay_jsapi(self, order: Order, openid: str, description: str) -> str:
        body = self._order_body(order, "jsapi", description) | {"payer": {"openid": openid}}
        return str((await self.request("POST", "/v3/pay/transactions/jsapi", body))["prepay_id"])

    async def prepay_native(self, order: Order, description: str) -> str:
        return str((await self.request("POST", "/v3/pay/transactions/native",
                                       self._order_body(order, "native", description)))["code_url"])

    async def query(self, trade_no: str) -> dict[str, Any]:
        """GET a transaction by its out_trade_no (one per order and trade type)."""
        return await self.request(
            "GET", f"/v3/pay/transactions/out-trade-no/{quote(trade_no, safe='')}?mchid={quote(self.config.mchid)}")

    async def close(self, trade_no: str) -> None:
        await self.request("POST", f"/v3/pay/transactions/out-trade-no/{quote(trade_no, safe='')}/close",
                           {"mchid": self.config.mchid})

    async def refund(self, order: Order, transaction_id: str, amount: int, reason: str = "",
                     total: int | None = None) -> dict[str, Any]:
        """The whole payment back (what is left of it after partial refunds: then `total` is the transaction's
        amount): `amount` is what that transaction took (it may differ from the order's amount when a mismatching
        payment was held and the merchant rejected it)."""
        return await self.refund_transaction(out_refund_no(order), transaction_id, amount, order.currency, reason,
                                             total)

    async def refund_transaction(self, refund_no: str, transaction_id: str, amount: int, currency: str,
                                 reason: str = "", total: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "transaction_id": transaction_id, "out_refund_no": refund_no, "notify_url": self.config.notify_url,
            "amount": {"refund": amount, "total": total if total is not None else amount, "currency": currency},
        }
        if reason:
            body["reason"] = reason[:80]
        return await self.request("POST", "/v3/refund/domestic/refunds", body)


class WeChatPayProvider:
    """The `wechatpay` PaymentProvider: refunds through POST /v3/refund/domestic/refunds.

    Returns only when WeChat Pay says SUCCESS, so the delivery worker records the refund in the ledger then;
    PROCESSING asks the worker to try again (the same out_refund_no finds the same refund), and the REFUND.SUCCESS
    notification records it too if it comes first (store.refund is idempotent). The order's own payment is
    refunded as `out_refund_no(order)`; any other transaction of the order (a second payment) as
    `extra_refund_no(txn)`, so the two refunds can never be taken for one another.
    """

    name = "wechatpay"

    def __init__(self, client: WeChatPayClient, own_payment: OwnPayment | None = None,
                 refunded_parts: Callable[[int], Awaitable[int]] | None = None) -> None:
        self.client = client
        #: (provider, txn id) of the payment an order lives by; None: every refund is of the order's own payment
        self.own_payment = own_payment
        #: what partial refunds of an order gave back (store.refunded_parts): the rest is refunded of that total
        self.refunded_parts = refunded_parts

    async def refund(self, order: Order, provider_txn_id: str, amount: int) -> str:
        own = await self.own_payment(order.id) if self.own_payment is not None else None
        if own is not None and own[1] != provider_txn_id:
            result = await self.client.refund_transaction(extra_refund_no(provider_txn_id), provider_txn_id, amount,
                                                          order.currency, reason="duplicate payment " + order.ref)
        else:
            before = await self.refunded_parts(order.id) if self.refunded_parts is not None else 0
            result = await self.client.refund(order, provider_txn_id, amount, reason="refund " + order.ref,
                                              total=amount + before if before else None)
        status = str(result.get("status", ""))
        log.info("event=wechatpay.refund order_id=%s status=%s", order.id, status)
        if status == "SUCCESS":
            return str(result.get("refund_id", out_refund_no(order)))
        if status == "PROCESSING":
            raise RetryLater(REFUND_PROCESSING_RETRY_S)
        raise WeChatPayError(200, "REFUND_" + (status or "UNKNOWN"), "refund not successful")
