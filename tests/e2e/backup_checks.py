"""What a backup taken mid-burst must hold, for the backup tests of both backends: a shop that sells continuously
while the backup runs (checkouts, cancellations, unpaid reservations, payments, deliveries), and the invariants a
copy of one commit keeps, written as plain SQL (tests/e2e/db_checks.py plus the ledger)."""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from bot.composition import Shop
from fulfillment.delivery import Delivery
from fulfillment.errors import OutOfStock
from fulfillment.orders import CheckoutRequest
from storage.records import EncryptedCode
from tests.e2e import db_checks

#: per order with codes: the sale equals the order's amount and the cost the sum of its items' costs
LEDGER_CHECKS = {
    "sale_mismatch": "SELECT o.id FROM orders o LEFT JOIN (SELECT order_id, SUM(amount) AS s FROM ledger"
                     " WHERE kind = 'sale' GROUP BY order_id) l ON l.order_id = o.id"
                     " WHERE o.state IN ('paid', 'delivering', 'delivered') AND COALESCE(l.s, 0) <> o.amount",
    "cost_mismatch": "SELECT o.id FROM orders o LEFT JOIN (SELECT order_id, SUM(amount) AS s FROM ledger"
                     " WHERE kind = 'cost' GROUP BY order_id) l ON l.order_id = o.id"
                     " LEFT JOIN (SELECT order_id, SUM(unit_cost) AS c FROM order_items WHERE NOT released"
                     " GROUP BY order_id) i ON i.order_id = o.id"
                     " WHERE o.state IN ('paid', 'delivering', 'delivered') AND -COALESCE(l.s, 0) <> COALESCE(i.c, 0)",
    "money_without_payment": "SELECT DISTINCT l.order_id FROM ledger l JOIN orders o ON o.id = l.order_id"
                             " WHERE o.state NOT IN ('paid', 'delivering', 'delivered')",
    "delivered_outbox_open": "SELECT o.id FROM orders o JOIN outbox b ON b.order_id = o.id AND b.kind = 'deliver'"
                             " WHERE o.state = 'delivered' AND b.done_at IS NULL",
}
SUMMARY = {
    "codes": "SELECT COUNT(*) FROM codes",
    "uses_left": "SELECT COALESCE(SUM(uses_left), 0) FROM codes",
    "items": "SELECT COUNT(*) FROM order_items WHERE NOT released",
    "ledger_rows": "SELECT COUNT(*) FROM ledger",
    "sales": "SELECT COALESCE(SUM(amount), 0) FROM ledger WHERE kind = 'sale'",
    "costs": "SELECT COALESCE(SUM(amount), 0) FROM ledger WHERE kind = 'cost'",
    "paid_amounts": "SELECT COALESCE(SUM(amount), 0) FROM orders WHERE state IN ('paid', 'delivering', 'delivered')",
}
BY_STATE = "SELECT state, COUNT(*) FROM orders GROUP BY state"
ITEMS = "SELECT o.ref, i.code_id, i.use_no FROM orders o JOIN order_items i ON i.order_id = o.id WHERE NOT i.released"
CODES = "SELECT id, digest, key_id, nonce, ciphertext FROM codes ORDER BY id"


LEDGER = "SELECT id, order_id, kind, currency, amount FROM ledger ORDER BY id"


@dataclass
class Snapshot:
    """A database's counts and sums, broken invariants, codes per order ref and encrypted codes."""

    summary: dict[str, Any]
    bad: dict[str, list[Any]]
    items: dict[str, set[tuple[int, int]]]
    codes: list[EncryptedCode]
    ledger: list[tuple[Any, ...]]


def _snapshot(one: Callable[[str], Any], rows: Callable[[str], list[tuple[Any, ...]]]) -> Snapshot:
    summary: dict[str, Any] = {name: int(one(sql)) for name, sql in SUMMARY.items()}
    summary["orders_by_state"] = {str(s): int(n) for s, n in rows(BY_STATE)}
    checks = {**db_checks.CHECKS, **LEDGER_CHECKS}
    bad = {name: found for name, sql in checks.items() if (found := rows(sql))}
    items: dict[str, set[tuple[int, int]]] = {}
    for ref, code_id, use_no in rows(ITEMS):
        items.setdefault(str(ref), set()).add((int(code_id), int(use_no)))
    codes = [EncryptedCode(int(i), bytes(d), str(k), bytes(n), bytes(c)) for i, d, k, n, c in rows(CODES)]
    return Snapshot(summary, bad, items, codes, rows(LEDGER))


def read_sqlite(path: Path) -> Snapshot:
    db = sqlite3.connect(path)
    try:
        return _snapshot(lambda sql: db.execute(sql).fetchone()[0], lambda sql: db.execute(sql).fetchall())
    finally:
        db.close()


async def read_pg(dsn: str, schema: str) -> Snapshot:
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):  # one snapshot for every query
            answers: dict[str, Any] = {}
            for sql in [*SUMMARY.values()]:
                answers[sql] = await conn.fetchval(sql)
            for sql in [BY_STATE, *db_checks.CHECKS.values(), *LEDGER_CHECKS.values(), ITEMS, CODES, LEDGER]:
                answers[sql] = [tuple(r) for r in await conn.fetch(sql)]
    finally:
        await conn.close()
    return _snapshot(answers.__getitem__, answers.__getitem__)


class Inbox:
    """The console channel of these tests: remembers the codes each order was given."""

    def __init__(self) -> None:
        self.codes: dict[str, list[str]] = {}

    async def deliver(self, delivery: Delivery) -> None:
        self.codes.setdefault(delivery.order.ref, []).extend(delivery.codes)


@dataclass
class Burst:
    """Customers buying and paying continuously, with a delivery worker, until stopped."""

    shop: Shop
    sku_ids: list[int]
    customers: int = 6
    paid: int = 0
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._customer(n)) for n in range(self.customers)]
        self._tasks.append(loop.create_task(self._deliverer()))

    async def until_paid(self, n: int, timeout: float = 90.0) -> None:  # noqa: ASYNC109 - a test's deadline
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: self.paid >= n), timeout)

    async def finish(self) -> None:
        self.stop.set()
        await asyncio.gather(*self._tasks)
        await self.shop.delivery.drain()

    async def _customer(self, n: int) -> None:
        provider = self.shop.providers["test"]
        i = 0
        while not self.stop.is_set():
            i += 1
            user = f"b{n}-{i}-{secrets.token_hex(2)}"
            sku_id = self.sku_ids[i % len(self.sku_ids)]
            try:
                order = await self.shop.orders.checkout(CheckoutRequest("console", user, user, sku_id, 1 + i % 2))
            except OutOfStock:
                return
            if i % 7 == 0:
                await self.shop.orders.cancel(order.ref, user)
            elif i % 5 != 0:  # every fifth stays awaiting payment: a live reservation in the copy
                await self.shop.payments.receive(provider.pay(order))
                self.paid += 1
                async with self._changed:
                    self._changed.notify_all()
            await asyncio.sleep(0.05)  # ~100 orders/s in all: the stock outlasts a slow machine's backup command

    async def _deliverer(self) -> None:
        while not self.stop.is_set():
            await self.shop.delivery.run_once()
            await asyncio.sleep(0.01)
