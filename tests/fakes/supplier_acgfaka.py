"""A fake acg-faka shop serving the shared-shop ("共享店铺") API on 127.0.0.1, strict where the real one is.

Protocol source: github lizhipay/acg-faka at 574c3ff8 - app/Util/Str.php `generateSignature` (ksort, '' dropped,
md5(urldecode(http_build_query) . "&key=" . app_key)), app/Interceptor/SharedValidation.php (unknown app_id ->
"商户ID不存在", bad sign -> "密钥错误"), app/Controller/Shared/Authentication.php (connect), app/Controller/Shared/
Commodity.php (items, inventory, trade, query), app/Service/Bind/Order.php `trade` (repeated request_no ->
"The request ID already exists"; codes joined by PHP_EOL in `secret`; a shortage leaves a sorry text),
app/Model/Bill.php ("余额不足"), kernel/Kernel.php (errors: HTTP 200 {"code": 0, "msg": ...}; others HTML).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.supplier_faults import Faults, after_accept_fault, read_fault


def acgfaka_sign(data: dict[str, str], app_key: str) -> str:
    pairs = "&".join(f"{k}={data[k]}" for k in sorted(data) if k != "sign" and data[k] != "")
    return hashlib.md5(f"{pairs}&key={app_key}".encode()).hexdigest()


def yuan(minor: int) -> float:
    return minor / 100  # acg-faka stores decimal(10,2) and answers JSON numbers


@dataclass
class FakeCommodity:
    code: str
    name: str
    price: int  # fen, the member price our user pays
    cards: list[str] = field(default_factory=list)
    delivery_way: int = 0  # 0 automatic (cards), 1 by hand
    status: int = 1


@dataclass
class FakeTrade:
    trade_no: str
    request_no: str
    code: str
    num: int
    amount: int
    secret: str


class FakeAcgFaka:
    def __init__(self, app_id: str = "7", app_key: str | None = None, balance: int = 100_000) -> None:
        self.app_id = app_id
        self.app_key = app_key or secrets.token_hex(16)
        self.balance = balance
        self.commodities: dict[str, FakeCommodity] = {}
        self.trades: dict[str, FakeTrade] = {}
        self.request_nos: dict[str, str] = {}
        self.faults = Faults()
        self.trade_requests = 0
        self.calls: list[str] = []  # request paths, in order
        self.issued_codes: list[str] = []
        self._ids = itertools.count(100)
        self.app = Starlette(routes=[
            Route("/shared/authentication/connect", self.connect, methods=["POST"]),
            Route("/shared/commodity/items", self.items, methods=["POST"]),
            Route("/shared/commodity/inventory", self.inventory, methods=["POST"]),
            Route("/shared/commodity/trade", self.trade, methods=["POST"]),
            Route("/shared/commodity/query", self.query, methods=["POST"]),
        ])

    def add_commodity(self, code: str, name: str, price: int, stock: int = 100, delivery_way: int = 0) -> FakeCommodity:
        cards = [f"ACG-{code}-{secrets.token_hex(6)}" for _ in range(stock)]
        self.commodities[code] = FakeCommodity(code, name, price, cards, delivery_way)
        return self.commodities[code]

    async def close(self) -> None:
        return None

    @staticmethod
    def _json(code: int, msg: str | None = None, data: Any = None) -> JSONResponse:
        body: dict[str, Any] = {"code": code}
        if msg:
            body["msg"] = msg
        body["data"] = [] if data is None else data
        return JSONResponse(body)

    def _error(self, msg: str) -> JSONResponse:
        return JSONResponse({"code": 0, "msg": msg})

    async def _form(self, request: Request) -> tuple[dict[str, str], Response | None]:
        self.calls.append(request.url.path)
        if self.faults.latency:
            await asyncio.sleep(self.faults.latency)
        if request.url.path != "/shared/commodity/trade" and (fault := read_fault(self.faults)):
            return {}, fault
        form = {k: str(v) for k, v in (await request.form()).items()}
        if form.get("app_id") != self.app_id:
            return form, self._error("商户ID不存在")
        if not secrets.compare_digest(acgfaka_sign(form, self.app_key), form.get("sign", "")):
            return form, self._error("密钥错误")
        return form, None

    async def connect(self, request: Request) -> Response:
        _, refused = await self._form(request)
        return refused or self._json(200, "success", {"shopName": "Upstream Shop", "balance": yuan(self.balance)})

    async def items(self, request: Request) -> Response:
        _, refused = await self._form(request)
        if refused:
            return refused
        children = [{"id": i, "name": c.name, "code": c.code, "price": yuan(c.price), "user_price": yuan(c.price),
                     "delivery_way": c.delivery_way, "status": c.status, "stock": len(c.cards), "config": "",
                     "hide": 0} for i, c in enumerate(self.commodities.values(), 1) if c.status == 1]
        return self._json(200, None, [{"id": 1, "name": "Games", "status": 1, "children": children}])

    async def inventory(self, request: Request) -> Response:
        form, refused = await self._form(request)
        if refused:
            return refused
        c = self.commodities.get(form.get("sharedCode", ""))
        if c is None:
            return self._error("商品不存在")
        if c.status != 1:
            return self._error("当前商品已停售")
        return self._json(200, "success", {
            "count": len(c.cards) if c.delivery_way == 0 else 0, "delivery_way": c.delivery_way, "draft_status": 0,
            "price": yuan(c.price), "user_price": yuan(c.price), "config": "", "factory_price": yuan(c.price),
            "is_category": False})

    def _refusal(self, form: dict[str, str]) -> str | None:
        c = self.commodities.get(form.get("shared_code", ""))
        num = int(form["num"]) if form.get("num", "").isdigit() else 0
        if c is None:
            return "商品不存在"
        if c.status != 1:
            return "当前商品已停售"
        if num <= 0:
            return "至少购买1个"
        if len(form.get("contact", "")) < 3:
            return "联系方式不能低于3个字符"
        if c.delivery_way == 0 and len(c.cards) < num:
            return "库存不足"
        if form.get("request_no") and form["request_no"] in self.request_nos:
            return "The request ID already exists"
        if self.balance < c.price * num:
            return "余额不足"
        return None

    async def trade(self, request: Request) -> Response:
        self.trade_requests += 1
        form, refused = await self._form(request)
        if refused:
            return refused
        refusal = self._refusal(form)
        if refusal:
            return self._error(refusal)
        c, num = self.commodities[form["shared_code"]], int(form["num"])
        self.balance -= c.price * num
        if c.delivery_way == 0:
            codes, c.cards = c.cards[:num], c.cards[num:]
            self.issued_codes.extend(codes)
            if num > 1 and self.faults.take("duplicate_codes"):
                codes[-1] = codes[0]
            if self.faults.take("fewer_codes"):
                codes = codes[:-1]
            secret = "\n".join(codes)
        else:
            secret = "正在发货中，请耐心等待，如有疑问，请联系客服。"
        trade = FakeTrade(trade_no=f"{next(self._ids)}{secrets.randbelow(10**9):09d}",
                          request_no=form.get("request_no", ""), code=c.code, num=num, amount=c.price * num,
                          secret=secret)
        self.trades[trade.trade_no] = trade
        if trade.request_no:
            self.request_nos[trade.request_no] = trade.trade_no
        data: dict[str, Any] = {"url": None, "amount": yuan(trade.amount), "tradeNo": trade.trade_no,
                                "secret": secret, "leave_message": None}
        if self.faults.take("missing_fields_after_accept"):
            del data["tradeNo"], data["amount"]
        body = json.dumps({"code": 200, "msg": "success", "data": data}, ensure_ascii=False).encode()
        return after_accept_fault(self.faults, body) or Response(body, media_type="application/json")

    async def query(self, request: Request) -> Response:
        form, refused = await self._form(request)
        if refused:
            return refused
        trade = self.trades.get(form.get("tradeNo", ""))
        if trade is None:
            return self._error("订单不存在")
        return self._json(200, "success", {"secret": trade.secret, "widget": None, "status": 1})
