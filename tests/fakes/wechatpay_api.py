"""A fake WeChat Pay APIv3 server on 127.0.0.1: checks our request signatures, signs its responses with the
platform key, keeps transactions and refunds, and sends signed, encrypted notifications to our notify URL.

Strict where WeChat Pay is strict about prepays (JSAPI/小程序下单, https://pay.wechatpay.cn/doc/v3/merchant/4012791897:
`out_trade_no` is 6-32 characters of [A-Za-z0-9_-|*], unique per merchant): one out_trade_no lives in one payment
scenario only. A second prepay of it under another trade type (Native first in a desktop browser, then JSAPI
inside WeChat) is refused with HTTP 400 `{"code":"INVALID_REQUEST","message":"201 商户订单号重复"}`
("这个等于你一个订单号在两个不同支付场景下单了,这是不被系统允许的", WeChat Pay's answer in the developer community,
https://developers.weixin.qq.com/community/develop/doc/00068ce24f86509b623bd1b645b400), and so is one with the
same type but other parameters (another payer's openid or amount). Repeating the same prepay with the same
parameters returns the same prepay_id / code_url, which stays valid for two hours.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fulfillment.wechatpay_crypto import (
    encrypt_resource,
    notification_message,
    parse_authorization,
    request_message,
    rsa_sign,
    rsa_verify,
)

TRADE_NO = re.compile(r"[A-Za-z0-9_\-|*]{6,32}")


def y(fen: int) -> str:
    """Fen as the bill writes yuan, exactly: 1001 → '10.01', -6 → '-0.06'."""
    sign, fen = ("-", -fen) if fen < 0 else ("", fen)
    return f"{sign}{fen // 100}.{fen % 100:02d}"


class Trades(dict[str, dict[str, Any]]):
    """Transactions by out_trade_no. For the tests' convenience an order ref whose order has exactly one trade
    number (`{ref}-J` or `{ref}-N`) finds that trade too: `fake.transactions[order.ref]`."""

    def __missing__(self, key: str) -> dict[str, Any]:
        found = [v for k, v in self.items() if k.startswith(key + "-")]
        if len(found) != 1:
            raise KeyError(key)
        return found[0]

    def resolve(self, key: str) -> str:
        """The out_trade_no a test means by `key` (an out_trade_no, or the ref of an order with one trade)."""
        if key in self:
            return key
        found = [k for k in self if k.startswith(key + "-")]
        return found[0] if len(found) == 1 else key


@dataclass
class FakeWeChatPay:
    mchid: str
    app_id: str
    api_v3_key: bytes
    merchant_public_key: rsa.RSAPublicKey
    merchant_serial_no: str
    platform_key: rsa.RSAPrivateKey
    platform_serial: str  # PUB_KEY_ID_… (public-key mode) or a certificate serial in hex
    notify_url: str = ""
    refund_status: str = "SUCCESS"  # what a new refund answers: SUCCESS or PROCESSING
    transactions: Trades = field(default_factory=Trades)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)  # out_trade_nos refused with "201 商户订单号重复"
    bills: dict[str, bytes] = field(default_factory=dict)  # download token → bill file
    bill_rewrite: Callable[[bytes], bytes] | None = None  # a test's tampering with the file on its way
    #: ALL bills (bill_type=ALL, tar_type=GZIP): the fee WeChat Pay takes, in 1/10000 (0.6%: 60), the Beijing day of
    #: each refund, and a test's edit of the bill text before it is hashed (a bill WeChat Pay itself serves so)
    fee_rate_bp: int = 60
    refund_days: dict[str, str] = field(default_factory=dict)
    bill_edit: Callable[[str], str] | None = None

    @staticmethod
    def public(tx: dict[str, Any]) -> dict[str, Any]:
        """A transaction as the query API and notifications show it (no prepay bookkeeping)."""
        return {k: v for k, v in tx.items() if k not in ("prepay_id", "code_url", "prepay_params", "bill_date")}

    # -- signing ---------------------------------------------------------------
    def sign_headers(self, body: str, *, timestamp: int | None = None, nonce: str | None = None,
                     serial: str | None = None, key: rsa.RSAPrivateKey | None = None) -> dict[str, str]:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        nonce = nonce or secrets.token_hex(16)
        signature = rsa_sign(key or self.platform_key, notification_message(ts, nonce, body))
        return {"Wechatpay-Timestamp": ts, "Wechatpay-Nonce": nonce, "Wechatpay-Signature": signature,
                "Wechatpay-Serial": serial or self.platform_serial,
                "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048"}

    def _answer(self, data: dict[str, Any] | None, status: int = 200) -> Response:
        body = json.dumps(data, ensure_ascii=False) if data is not None else ""
        headers = self.sign_headers(body)
        if data is None:
            return Response(status_code=204, headers=headers)
        return Response(body, status_code=status, headers=headers, media_type="application/json")

    @staticmethod
    def _error(status: int, code: str, message: str) -> Response:
        return JSONResponse({"code": code, "message": message}, status_code=status)

    def _verify(self, request: Request, body: str) -> str | None:
        """Our Authorization header: schema, mchid, serial, fresh timestamp, RSA signature."""
        fields = parse_authorization(request.headers.get("authorization", ""))
        url = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if not fields or fields.get("mchid") != self.mchid or fields.get("serial_no") != self.merchant_serial_no:
            return "bad authorization header"
        if not fields.get("timestamp", "").isdigit() or abs(time.time() - int(fields["timestamp"])) > 300:
            return "stale timestamp"
        message = request_message(request.method, url, fields["timestamp"], fields.get("nonce_str", ""), body)
        if not rsa_verify(self.merchant_public_key, message, fields.get("signature", "")):
            return "signature does not verify"
        return None

    # -- notifications -----------------------------------------------------------
    def notification(self, event_type: str, resource: dict[str, Any], **sign: Any) -> tuple[dict[str, str], bytes]:
        """A signed notification with the resource encrypted under the APIv3 key, as WeChat Pay sends it."""
        nonce = secrets.token_hex(6)  # 12 characters: the AES-GCM nonce
        original = "refund" if event_type.startswith("REFUND.") else "transaction"
        associated = original
        envelope = {
            "id": secrets.token_hex(18), "create_time": time.strftime("%Y-%m-%dT%H:%M:%S+08:00"),
            "event_type": event_type, "resource_type": "encrypt-resource", "summary": "summary",
            "resource": {"algorithm": "AEAD_AES_256_GCM", "original_type": original, "associated_data": associated,
                         "nonce": nonce, "ciphertext": encrypt_resource(
                             self.api_v3_key, nonce, json.dumps(resource, ensure_ascii=False).encode(), associated)},
        }
        body = json.dumps(envelope)
        headers = self.sign_headers(body, **sign) | {"Content-Type": "application/json"}
        return headers, body.encode()

    async def send(self, headers: dict[str, str], body: bytes) -> httpx.Response:
        async with httpx.AsyncClient(timeout=10) as client:
            return await client.post(self.notify_url, content=body, headers=headers)

    def pay(self, ref: str, openid: str = "", amount: int | None = None, state: str = "SUCCESS") -> dict[str, Any]:
        """The customer pays (or not): the transaction's state changes as WeChat Pay's would. `ref` is an
        out_trade_no, or an order ref whose order has one prepaid trade."""
        ref = self.transactions.resolve(ref)
        tx = self.transactions.setdefault(ref, self._new_transaction(ref, amount or 0, "NATIVE", openid))
        tx["trade_state"] = state
        if amount is not None:
            tx["amount"]["total"] = tx["amount"]["payer_total"] = amount
        if state == "SUCCESS":
            tx["transaction_id"] = tx.get("transaction_id") or "42" + secrets.token_hex(13)
            tx["success_time"] = time.strftime("%Y-%m-%dT%H:%M:%S+08:00")
            tx.setdefault("bill_date", time.strftime("%Y-%m-%d", time.gmtime(time.time() + 8 * 3600)))
            tx["payer"] = {"openid": openid or tx["payer"].get("openid") or "o" + secrets.token_hex(8)}
        return self.public(tx)

    async def notify_paid(self, ref: str, openid: str = "") -> httpx.Response:
        tx = self.pay(ref, openid)
        return await self.send(*self.notification("TRANSACTION.SUCCESS", tx))

    async def notify_refund(self, out_refund_no: str) -> httpx.Response:
        refund = self.refunds[out_refund_no]
        refund["status"] = "SUCCESS"
        resource = {"mchid": self.mchid, "out_trade_no": refund["out_trade_no"],
                    "transaction_id": refund["transaction_id"], "out_refund_no": out_refund_no,
                    "refund_id": refund["refund_id"], "refund_status": "SUCCESS",
                    "success_time": time.strftime("%Y-%m-%dT%H:%M:%S+08:00"), "user_received_account": "支付用户零钱",
                    "amount": {"total": refund["amount"]["total"], "refund": refund["amount"]["refund"],
                               "payer_total": refund["amount"]["total"], "payer_refund": refund["amount"]["refund"]}}
        return await self.send(*self.notification("REFUND.SUCCESS", resource))

    def _new_transaction(self, ref: str, total: int, trade_type: str, openid: str) -> dict[str, Any]:
        return {"appid": self.app_id, "mchid": self.mchid, "out_trade_no": ref, "trade_type": trade_type,
                "trade_state": "NOTPAY", "trade_state_desc": "", "bank_type": "OTHERS", "attach": "",
                "payer": {"openid": openid} if openid else {},
                "amount": {"total": total, "payer_total": total, "currency": "CNY", "payer_currency": "CNY"}}

    # -- API -----------------------------------------------------------------------
    async def _body(self, request: Request) -> tuple[str, Response | None]:
        body = (await request.body()).decode()
        problem = self._verify(request, body)
        self.calls.append((request.method, request.url.path))
        if problem:
            self.rejected.append(problem)
            return body, self._error(401, "SIGN_ERROR", problem)
        return body, None

    async def prepay(self, request: Request) -> Response:
        raw, failed = await self._body(request)
        if failed:
            return failed
        kind = request.path_params["kind"]
        if kind not in ("jsapi", "native"):
            return self._error(404, "NOT_FOUND", "no such trade type here")
        data = json.loads(raw)
        amount = data.get("amount") or {}
        missing = [k for k in ("appid", "mchid", "description", "out_trade_no", "notify_url") if not data.get(k)]
        if missing or not isinstance(amount.get("total"), int) or (kind == "jsapi" and not data["payer"]["openid"]):
            return self._error(400, "PARAM_ERROR", f"missing {missing}")
        if data["mchid"] != self.mchid or data["appid"] != self.app_id:
            return self._error(400, "APPID_MCHID_NOT_MATCH", "appid and mchid do not match")
        ref = data["out_trade_no"]
        if not isinstance(ref, str) or not TRADE_NO.fullmatch(ref):
            return self._error(400, "PARAM_ERROR", "out_trade_no must be 6-32 characters of [A-Za-z0-9_-|*]")
        tx = self.transactions.get(ref)
        if tx is not None and tx["trade_state"] == "SUCCESS":
            return self._error(400, "ORDERPAID", "order paid")
        params = {k: data.get(k) for k in ("description", "amount", "payer", "time_expire")}
        if tx is not None and (tx["trade_type"] != kind.upper() or tx["prepay_params"] != params):
            self.duplicates.append(ref)
            return self._error(400, "INVALID_REQUEST", "201 商户订单号重复")
        if tx is None:
            tx = self.transactions[ref] = self._new_transaction(ref, amount["total"], kind.upper(),
                                                                (data.get("payer") or {}).get("openid", ""))
            tx["prepay_params"] = params
            tx["prepay_id"] = "wx" + secrets.token_hex(14)
            tx["code_url"] = "weixin://wxpay/bizpayurl?pr=" + secrets.token_hex(4)
        if kind == "jsapi":
            return self._answer({"prepay_id": tx["prepay_id"]})
        return self._answer({"code_url": tx["code_url"]})

    async def query(self, request: Request) -> Response:
        _, failed = await self._body(request)
        if failed:
            return failed
        if request.query_params.get("mchid") != self.mchid:
            return self._error(400, "PARAM_ERROR", "mchid")
        tx = self.transactions.get(request.path_params["ref"])
        if tx is None:
            return self._error(404, "ORDER_NOT_EXIST", "order does not exist")
        return self._answer(self.public(tx))

    async def close(self, request: Request) -> Response:
        raw, failed = await self._body(request)
        if failed:
            return failed
        if json.loads(raw).get("mchid") != self.mchid:
            return self._error(400, "PARAM_ERROR", "mchid")
        tx = self.transactions.get(request.path_params["ref"])
        if tx is None:
            return self._error(404, "ORDER_NOT_EXIST", "order does not exist")
        if tx["trade_state"] == "SUCCESS":
            return self._error(400, "ORDERPAID", "order paid")
        tx["trade_state"] = "CLOSED"
        return self._answer(None)

    async def refund(self, request: Request) -> Response:
        raw, failed = await self._body(request)
        if failed:
            return failed
        data = json.loads(raw)
        existing = self.refunds.get(data.get("out_refund_no", ""))
        if existing is not None:
            return self._answer(existing)
        tx = next((t for t in self.transactions.values() if t.get("transaction_id") == data.get("transaction_id")
                   and t["trade_state"] in ("SUCCESS", "REFUND")), None)
        if tx is None:
            return self._error(404, "RESOURCE_NOT_EXISTS", "transaction does not exist")
        amount = data["amount"]
        if amount["total"] != tx["amount"]["total"] or not 0 < amount["refund"] <= amount["total"]:
            return self._error(400, "INVALID_REQUEST", "refund amount")
        tx["trade_state"] = "REFUND"
        refund = {"refund_id": "50" + secrets.token_hex(13), "out_refund_no": data["out_refund_no"],
                  "transaction_id": tx["transaction_id"], "out_trade_no": tx["out_trade_no"], "channel": "ORIGINAL",
                  "status": self.refund_status, "create_time": time.strftime("%Y-%m-%dT%H:%M:%S+08:00"),
                  "amount": {"total": amount["total"], "refund": amount["refund"], "currency": "CNY",
                             "payer_total": amount["total"], "payer_refund": amount["refund"]}}
        self.refunds[data["out_refund_no"]] = refund
        self.refund_days[data["out_refund_no"]] = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 8 * 3600))
        return self._answer(refund)

    # -- trade bills (https://pay.weixin.qq.com/docs/merchant/products/bill-download/format-trade.html) ------------
    BILL_HEADER = ("交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,"
                   "交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,商品名称,商户数据包,"
                   "手续费,费率,订单金额,费率备注")

    def bill_text(self, day: str) -> str:
        """The SUCCESS bill of one day (Beijing date): backtick-prefixed fields, amounts in yuan, a summary."""
        paid = [t for t in self.transactions.values() if t.get("bill_date") == day and t.get("transaction_id")]
        lines = [self.BILL_HEADER]
        for t in paid:
            yuan = f"{t['amount']['total'] / 100:.2f}"
            fields = [f"{day} 12:00:00", t["appid"], t["mchid"], "0", "", t["transaction_id"], t["out_trade_no"],
                      t["payer"].get("openid", ""), t["trade_type"], "SUCCESS", "OTHERS", t["amount"]["currency"],
                      yuan, "0.00", "goods", "", "0.00", "0.60%", yuan, ""]
            lines.append(",".join("`" + f for f in fields))
        total = sum(t["amount"]["total"] for t in paid) / 100
        lines += ["总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额",
                  f"`{len(paid)},`{total:.2f},`0.00,`0.00,`0.00,`{total:.2f},`0.00"]
        return "\r\n".join(lines) + "\r\n"

    # ALL: payments and refunds of the day with the fee (format-trade.html above, "ALL类型账单"); refund rows carry
    # the refund in 退款金额 and the fee given back as a negative 手续费
    ALL_HEADER = ("交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,"
                  "交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,"
                  "商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,"
                  "手续费,费率,订单金额,申请退款金额,费率备注")
    ALL_SUMMARY = "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"

    def fee(self, amount: int) -> int:
        """WeChat Pay's fee on an amount in fen, rounded half up to the fen."""
        return (amount * self.fee_rate_bp + 5000) // 10000

    def bill_all_text(self, day: str) -> str:
        paid = [t for t in self.transactions.values() if t.get("bill_date") == day and t.get("transaction_id")]
        refunds = [r for no, r in self.refunds.items() if self.refund_days.get(no) == day]
        lines = [self.ALL_HEADER]
        for t in paid:
            total = t["amount"]["total"]
            lines.append(",".join("`" + f for f in [
                f"{day} 12:00:00", t["appid"], t["mchid"], "0", "", t["transaction_id"], t["out_trade_no"],
                t["payer"].get("openid", ""), t["trade_type"], "SUCCESS", "OTHERS", t["amount"]["currency"],
                y(total), "0.00", "", "", "0.00", "0.00", "", "", "goods", "", y(self.fee(total)), "0.60%", y(total),
                "0.00", ""]))
        for r in refunds:
            back = r["amount"]["refund"]
            lines.append(",".join("`" + f for f in [
                f"{day} 13:00:00", self.app_id, self.mchid, "0", "", r["transaction_id"], r["out_trade_no"], "",
                "JSAPI", "REFUND", "OTHERS", "CNY", "0.00", "0.00", r["refund_id"], r["out_refund_no"], y(back), "0.00",
                "ORIGINAL", r["status"], "goods", "", y(-self.fee(back)), "0.60%", "0.00", y(back), ""]))
        total = sum(t["amount"]["total"] for t in paid)
        back = sum(r["amount"]["refund"] for r in refunds)
        fees = sum(self.fee(t["amount"]["total"]) for t in paid) - sum(self.fee(r["amount"]["refund"]) for r in refunds)
        lines += [self.ALL_SUMMARY, ",".join("`" + f for f in [str(len(paid) + len(refunds)), y(total), y(back), "0.00",
                                                               y(fees), y(total), y(back)])]
        return "\r\n".join(lines) + "\r\n"

    async def trade_bill(self, request: Request) -> Response:
        _, failed = await self._body(request)
        if failed:
            return failed
        day = request.query_params.get("bill_date", "")
        kind = request.query_params.get("bill_type", "ALL")
        if kind not in ("ALL", "SUCCESS") or request.query_params.get("tar_type", "GZIP") != "GZIP":
            return self._error(400, "PARAM_ERROR", "bill_type / tar_type")
        paid = any(t.get("bill_date") == day and t.get("transaction_id") for t in self.transactions.values())
        if not paid and not (kind == "ALL" and day in self.refund_days.values()):
            return self._error(400, "NO_STATEMENT_EXIST", "账单文件不存在")
        text = self.bill_all_text(day) if kind == "ALL" else self.bill_text(day)
        data = (self.bill_edit(text) if self.bill_edit else text).encode()
        digest = hashlib.sha1(data).hexdigest()  # of the bill itself, also when it is sent compressed
        if "tar_type" in request.query_params:
            data = gzip.compress(data)
        token = secrets.token_hex(8)
        self.bills[token] = data
        url = f"{str(request.base_url).rstrip('/')}/v3/billdownload/file?token={token}"
        return self._answer({"hash_type": "SHA1", "hash_value": digest, "download_url": url})

    async def bill_download(self, request: Request) -> Response:
        """The bill file itself: our signed request, an unsigned answer (its hash came with the download URL)."""
        _, failed = await self._body(request)
        if failed:
            return failed
        data = self.bills.get(request.query_params.get("token", ""))
        if data is None:
            return self._error(404, "RESOURCE_NOT_EXISTS", "no such bill")
        return Response(self.bill_rewrite(data) if self.bill_rewrite else data, media_type="text/plain")

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/v3/bill/tradebill", self.trade_bill, methods=["GET"]),
            Route("/v3/billdownload/file", self.bill_download, methods=["GET"]),
            Route("/v3/pay/transactions/{kind:str}", self.prepay, methods=["POST"]),
            Route("/v3/pay/transactions/out-trade-no/{ref}", self.query, methods=["GET"]),
            Route("/v3/pay/transactions/out-trade-no/{ref}/close", self.close, methods=["POST"]),
            Route("/v3/refund/domestic/refunds", self.refund, methods=["POST"]),
        ])
