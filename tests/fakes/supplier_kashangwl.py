"""A fake 卡商网 (kashangwl) supplier on 127.0.0.1, strict where the real one is.

Protocol sources (as in fulfillment/suppliers/kashangwl.py): http://doc.cqmeihu.cn/sales/buy.html,
https://www.866ka.cn/api-doc/buy.html (outer_order_id unique per merchant, safe_cost in yuan per unit, states
100/101/200/500/501), https://www.866ka.cn/api-doc/order-status-notify.html (form-POSTed notify, cards and tickets
outside the signature, answer "ok" or it is re-sent after 10 s, 3 times in all), github dtapps/go-library
service/kashangwl (sign = md5(key + sorted k+v), customer_id and a millisecond timestamp on every call; the
/api/product, /api/order, /api/outer-order, /api/customer, /api/product/recharge-params fields).

Where the docs are silent the fake does what the adapter assumes: named error codes (sign_error,
outer_order_id_exists, ...), a repeated outer_order_id refused (never a second purchase), callbacks signed like
requests, requests accepted as a form or JSON, timestamps within 5 minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.supplier_faults import Faults, after_accept_fault, read_fault

TYPE_RECHARGE, TYPE_CARD, TYPE_VOUCHER, TYPE_MANUAL = 1, 2, 3, 4


def kashangwl_sign(key: str, params: dict[str, str]) -> str:
    return hashlib.md5((key + "".join(k + params[k] for k in sorted(params) if k != "sign")).encode()).hexdigest()


def yuan(minor: int) -> str:
    return f"{minor // 100}.{minor % 100:02d}00"


@dataclass
class FakeProduct:
    id: str
    name: str
    price: int  # fen
    type: int = TYPE_CARD
    stock: int = 100  # codes left (card / voucher)
    stock_state: int = 1  # 1 on sale, 2 maintenance, 3 off
    account_pattern: str = r"^1[3-9]\d{9}$"  # recharge products: a mainland mobile number


@dataclass
class FakeOrder:
    order_id: str
    outer_order_id: str
    product_id: str
    quantity: int
    total: int
    state: int
    notify_url: str = ""
    recharge_account: str = ""
    cards: list[dict[str, str]] = field(default_factory=list)
    state_info: str = ""
    created_at: str = field(default_factory=lambda: time.strftime("%Y-%m-%d %H:%M:%S"))


class FakeKashangwl:
    def __init__(self, customer_id: str = "10939", key: str | None = None, balance: int = 100_000) -> None:
        self.customer_id = customer_id
        self.key = key or secrets.token_hex(16)
        self.balance = balance
        self.products: dict[str, FakeProduct] = {}
        self.orders: dict[str, FakeOrder] = {}
        self.by_outer: dict[str, str] = {}
        self.faults = Faults()
        self.buy_requests = 0
        self.calls: list[str] = []  # request paths, in order
        self.issued_codes: list[str] = []
        self.callback_interval = 10.0  # documented: re-sent after 10 s
        self.callback_attempts = 3  # documented: 3 notifications in all
        self.settle_after = 0.05  # seconds until a 501 or 101 order settles
        self.callbacks: list[tuple[str, int, int, str]] = []  # (order_id, attempt, http status, body)
        self._ids = itertools.count(557305089422)
        self._tasks: set[asyncio.Task[Any]] = set()
        self.app = Starlette(routes=[
            Route("/api/product", self.product, methods=["POST"]),
            Route("/api/product/recharge-params", self.recharge_params, methods=["POST"]),
            Route("/api/buy", self.buy, methods=["POST"]),
            Route("/api/order", self.order, methods=["POST"]),
            Route("/api/outer-order", self.outer_order, methods=["POST"]),
            Route("/api/customer", self.customer, methods=["POST"]),
        ])

    def add_product(self, product: FakeProduct) -> FakeProduct:
        self.products[product.id] = product
        return product

    # -- protocol helpers ------------------------------------------------------------------------------------
    @staticmethod
    def _answer(code: str, message: str = "", data: Any = None) -> dict[str, Any]:
        return {"code": code, "message": message, "data": data}

    async def _params(self, request: Request) -> tuple[dict[str, str], Response | None]:
        self.calls.append(request.url.path)
        if self.faults.latency:
            await asyncio.sleep(self.faults.latency)
        if request.url.path != "/api/buy" and (fault := read_fault(self.faults)):
            return {}, fault
        if "json" in request.headers.get("content-type", ""):
            raw = await request.json()
            params = {k: str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
        else:
            params = {k: str(v) for k, v in (await request.form()).items()}
        if params.get("customer_id") != self.customer_id:
            return params, JSONResponse(self._answer("customer_not_found", "商家不存在"))
        ts = params.get("timestamp", "")
        if not ts.isdigit() or abs(time.time() - int(ts) / (1000 if len(ts) > 11 else 1)) > 300:
            return params, JSONResponse(self._answer("timestamp_expired", "时间戳错误"))
        if not secrets.compare_digest(kashangwl_sign(self.key, params), params.get("sign", "")):
            return params, JSONResponse(self._answer("sign_error", "签名错误"))
        return params, None

    def _order_data(self, order: FakeOrder) -> dict[str, Any]:
        product = self.products[order.product_id]
        return {"id": order.order_id, "product_id": int(order.product_id), "product_name": product.name,
                "product_type": product.type, "product_price": yuan(order.total // order.quantity),
                "quantity": order.quantity, "total_price": yuan(order.total), "refunded_amount": 0,
                "state": order.state, "created_at": order.created_at, "recharge_account": order.recharge_account,
                "recharge_info": order.state_info, "outer_order_id": order.outer_order_id,
                "cards": [{"no": c["card_no"], "password": c["card_password"]} for c in order.cards]
                if order.state == 200 else []}

    # -- endpoints ---------------------------------------------------------------------------------------------
    async def product(self, request: Request) -> Response:
        params, refused = await self._params(request)
        if refused:
            return refused
        p = self.products.get(params.get("product_id", ""))
        if p is None:
            return JSONResponse(self._answer("product_not_found", "商品不存在"))
        return JSONResponse(self._answer("ok", data={
            "id": int(p.id), "product_name": p.name, "name": "默认", "price": yuan(p.price),
            "valid_purchasing_quantity": "1-100", "type": p.type,
            "supply_state": 1 if p.type == TYPE_RECHARGE or p.stock > 0 else 2, "stock_state": p.stock_state}))

    async def recharge_params(self, request: Request) -> Response:
        params, refused = await self._params(request)
        if refused:
            return refused
        p = self.products.get(params.get("product_id", ""))
        if p is None or p.type != TYPE_RECHARGE:
            return JSONResponse(self._answer("product_not_found", "商品不存在"))
        return JSONResponse(self._answer("ok", data={"recharge_account_label": "手机号码", "recharge_params": []}))

    async def customer(self, request: Request) -> Response:
        _, refused = await self._params(request)
        if refused:
            return refused
        return JSONResponse(self._answer("ok", data={"id": int(self.customer_id), "name": "kamibot",
                                                     "balance": yuan(self.balance)}))

    async def order(self, request: Request) -> Response:
        params, refused = await self._params(request)
        if refused:
            return refused
        order = self.orders.get(params.get("order_id", ""))
        if order is None:
            return JSONResponse(self._answer("order_not_found", "订单不存在"))
        return JSONResponse(self._answer("ok", data=self._order_data(order)))

    async def outer_order(self, request: Request) -> Response:
        params, refused = await self._params(request)
        if refused:
            return refused
        order_id = self.by_outer.get(params.get("outer_order_id", ""))
        if order_id is None:
            return JSONResponse(self._answer("order_not_found", "订单不存在"))
        return JSONResponse(self._answer("ok", data=self._order_data(self.orders[order_id])))

    def _refusal(self, params: dict[str, str]) -> tuple[str, str] | None:
        p = self.products.get(params.get("product_id", ""))
        quantity = params.get("quantity", "")
        if p is None:
            return "product_not_found", "商品不存在"
        if p.stock_state != 1:
            return "product_unavailable", "商品维护中"
        if not quantity.isdigit() or not 1 <= int(quantity) <= 100:
            return "invalid_quantity", "购买数量不合法"
        if params.get("outer_order_id") and params["outer_order_id"] in self.by_outer:
            return "outer_order_id_exists", "外部订单号已存在"
        safe_cost = params.get("safe_cost", "")
        if safe_cost and p.price > round(float(safe_cost) * 100):
            return "price_above_safe_cost", "商品售价高于安全进价"
        if p.type == TYPE_RECHARGE and not re.fullmatch(p.account_pattern, params.get("recharge_account", "")):
            return "invalid_recharge_account", "充值账号格式错误"
        if self.balance < p.price * int(quantity):
            return "balance_not_enough", "余额不足"
        if p.type in (TYPE_CARD, TYPE_VOUCHER) and p.stock < int(quantity):
            return "out_of_stock", "库存不足"
        return None

    def _codes(self, product: FakeProduct, quantity: int) -> list[dict[str, str]]:
        product.stock -= quantity
        cards = []
        for _ in range(quantity):
            card = {"card_no": f"K{product.id}{secrets.randbelow(10**8):08d}", "card_password": secrets.token_hex(8),
                    "expired_at": "2030-12-31 00:00:00"}
            self.issued_codes.append(f"{card['card_no']} {card['card_password']}")
            cards.append(card)
        if quantity > 1 and self.faults.take("duplicate_codes"):
            cards[-1] = dict(cards[0])
        if self.faults.take("fewer_codes"):
            cards = cards[:-1]
        return cards

    def _book(self, params: dict[str, str]) -> tuple[FakeOrder, int | None]:
        """Charge the balance and create the order; returns it and the state it settles to later, if any."""
        product, quantity = self.products[params["product_id"]], int(params["quantity"])
        self.balance -= product.price * quantity
        order = FakeOrder(order_id=str(next(self._ids)), outer_order_id=params.get("outer_order_id", ""),
                          product_id=product.id, quantity=quantity, total=product.price * quantity, state=200,
                          notify_url=params.get("notify_url", ""), recharge_account=params.get("recharge_account", ""))
        self.orders[order.order_id] = order
        if order.outer_order_id:
            self.by_outer[order.outer_order_id] = order.order_id
        later: int | None = None
        if self.faults.take("unknown_then_success"):
            order.state, later = 501, 200
        elif self.faults.take("unknown_then_failed"):
            order.state, later = 501, 500
        elif product.type == TYPE_RECHARGE:
            order.state, later = 101, 200
        elif product.type == TYPE_MANUAL:
            order.state = 100
        if product.type in (TYPE_CARD, TYPE_VOUCHER):
            order.cards = self._codes(product, quantity)
        return order, later

    async def buy(self, request: Request) -> Response:
        self.buy_requests += 1
        params, refused = await self._params(request)
        if refused:
            return refused
        refusal = self._refusal(params)
        if refusal:
            return JSONResponse(self._answer(*refusal))
        order, later = self._book(params)
        if order.state == 200:
            if self.faults.take("callback_before_response"):
                await self._notify(order)
            else:
                self._spawn(self._notify(order))
        elif later is not None:
            self._spawn(self._settle_later(order, later))
        data = {"order_id": int(order.order_id), "product_price": yuan(order.total // order.quantity),
                "total_price": yuan(order.total), "recharge_url": "", "state": order.state,
                "cards": order.cards if order.state == 200 else [], "tickets": []}
        if self.faults.take("missing_fields_after_accept"):
            data = {"product_price": data["product_price"], "cards": data["cards"]}
        if self.faults.take("server_error_after_accept"):
            return JSONResponse(self._answer("server_error", "系统繁忙"))
        body = json.dumps(self._answer("ok", data=data), ensure_ascii=False).encode()
        return after_accept_fault(self.faults, body) or Response(body, media_type="application/json")

    # -- settling and callbacks --------------------------------------------------------------------------------
    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _settle_later(self, order: FakeOrder, state: int) -> None:
        await asyncio.sleep(self.settle_after)
        self.settle(order.order_id, state)

    def settle(self, order_id: str, state: int, info: str = "") -> None:
        """Move an order to 200 or 500 (refunding it) and notify, as the platform does."""
        order = self.orders[order_id]
        order.state, order.state_info = state, info
        if state == 500:
            self.balance += order.total
            order.cards = []
        self._spawn(self._notify(order))

    def callback_form(self, order: FakeOrder, *, key: str | None = None,
                      product_id: str | None = None) -> dict[str, str]:
        form = {"order_id": order.order_id, "outer_order_id": order.outer_order_id,
                "product_id": product_id or order.product_id, "quantity": str(order.quantity),
                "state": str(order.state), "state_info": order.state_info, "created_at": order.created_at,
                "timestamp": str(int(time.time())), "customer_id": self.customer_id}
        form["sign"] = kashangwl_sign(key or self.key, form)
        form["cards"] = json.dumps(order.cards if order.state == 200 else [])
        form["tickets"] = "[]"
        return form

    async def _notify(self, order: FakeOrder) -> None:
        if not order.notify_url:
            return
        product_id = None
        if self.faults.take("wrong_product_callback"):
            product_id = next((p for p in self.products if p != order.product_id), "999999")
        times = 2 if self.faults.take("duplicate_callbacks") else 1
        for _ in range(times):
            await self._deliver(order, self.callback_form(order, product_id=product_id))

    async def _deliver(self, order: FakeOrder, form: dict[str, str]) -> None:
        async with httpx.AsyncClient(timeout=5) as client:
            for attempt in range(1, self.callback_attempts + 1):
                try:
                    response = await client.post(order.notify_url, data=form)
                    self.callbacks.append((order.order_id, attempt, response.status_code, response.text))
                    if response.text.strip() == "ok":
                        return
                except httpx.HTTPError:
                    self.callbacks.append((order.order_id, attempt, 0, ""))
                await asyncio.sleep(self.callback_interval)

    async def send_forged_callback(self, order_id: str) -> httpx.Response:
        """A callback for a real order, signed with the wrong key, straight to its notify_url."""
        order = self.orders[order_id]
        form = self.callback_form(order, key=secrets.token_hex(16))
        async with httpx.AsyncClient(timeout=5) as client:
            return await client.post(order.notify_url, data=form)

    async def drain(self) -> None:
        """Wait for pending settlements and callbacks."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
