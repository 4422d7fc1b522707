"""PostgreSQL API orders in batches: concurrent `place_api_order` calls of one process go out together, the way
PaymentBatcher sends payments (storage/postgres_sales.py).

Why: every API order updates its pool's counter and its client's wallet, rows all orders of one SKU and client
share; one transaction per order held them until its own commit, so orders queued on them one commit at a time.

A batch goes out in up to three steps, each taking what the step before left:
1. kb_api_order_bulk (migration 0023): the plain orders (a fresh number and nonce, an own-stock SKU, a wallet and a
   pool that can serve them) with one statement per table for the whole batch. It answers 'KBSKP' for the others.
   When the call itself fails (a code short, a total that no longer fits, a number or nonce a concurrent transaction
   took), nothing of it was written and every order goes on to step 2.
2. kb_api_order_batch (migration 0019): each order in its own subtransaction, checked against what the batch's
   earlier orders take; the pool and wallet rows are updated once, at its end. An order whose subtransaction raised
   goes on to step 3; when the call fails, every order does.
3. kb_api_order_rows, one order alone, its error mapped as ever.
Placing is idempotent by the client's order number, so an order a lost call did commit comes back as it was in the
next step (its nonce, claimed by that commit, then answers NONCE_REUSED as it would).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import partial
from typing import Any

from storage.postgres_base import KeptConnections, answer_alone, aware, even_batch, order_from, start_flush
from storage.protocols.api import ApiOrderIn, ApiOrderPlaced
from storage.records import OnceKey
from storage.sqlite_api_bulk import item_from
from storage.sqlite_orders import new_ref

PlaceOne = Callable[[ApiOrderIn, datetime, OnceKey | None], Awaitable[ApiOrderPlaced]]
Item = tuple[ApiOrderIn, datetime, OnceKey | None, "asyncio.Future[ApiOrderPlaced]"]


class ApiOrderBatcher:
    BATCH_MAX = 32  # subtransactions per batch stay inside PostgreSQL's per-backend subxid cache (64)
    IN_FLIGHT = 4

    def __init__(self, conns: KeptConnections, placed_cols: str, order_n: int, closed: list[str],
                 payable: list[str], one: PlaceOne) -> None:
        self.conns = conns  # its own connections: the batch functions stay compiled in their backends
        args = ("($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::bigint[],"
                " $8::bigint[], $9::text[], $10::text[], $11::timestamptz[], $12::timestamptz[], $13::text[],"
                " $14::text[], $15::text[], $16::text[], $17::timestamptz[], $18::text[]) r")
        self.bulk_sql = f"SELECT b_index, b_error, {placed_cols} FROM kb_api_order_bulk{args}"
        self.sql = f"SELECT b_index, b_error, {placed_cols} FROM kb_api_order_batch{args}"
        self.order_n = order_n
        self.closed = closed
        self.payable = payable
        self.one = one
        self.queue: list[Item] = []
        self.flushing = 0

    async def submit(self, order: ApiOrderIn, now: datetime, nonce: OnceKey | None) -> ApiOrderPlaced:
        aware(now)
        future: asyncio.Future[ApiOrderPlaced] = asyncio.get_running_loop().create_future()
        self.queue.append((order, now, nonce, future))
        if self.flushing < self.IN_FLIGHT:
            self.flushing += 1
            start_flush(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            await asyncio.sleep(0)  # let the callers that are ready queue theirs first
            while self.queue:
                size = even_batch(len(self.queue), self.BATCH_MAX)  # p99 at 50 clients 5 ms lower than 32 + 18
                batch, self.queue = self.queue[:size], self.queue[size:]
                await self._run(batch)
        finally:
            self.flushing -= 1

    async def _run(self, batch: list[Item]) -> None:
        left = await self._together(self.bulk_sql, batch)
        if len(left) > 1:
            left = await self._together(self.sql, left)
        for order, now, nonce, future in left:
            await answer_alone(future, partial(self.one, order, now, nonce))

    def args(self, batch: list[Item]) -> list[object]:
        """The batch as the arrays both batch functions take (same parameters, in the batch's order)."""
        o = [it[0] for it in batch]
        nonces = [it[2] for it in batch]
        return [[x.client_id for x in o], [x.client_order_no for x in o], [x.request_hash for x in o],
                [x.callback_url for x in o], [new_ref() for _ in o], [x.sku_id for x in o],
                [x.quantity for x in o], [x.amount for x in o], [x.currency for x in o], [x.language for x in o],
                [aware(x.expires_at) for x in o], [it[1] for it in batch], self.closed, self.payable,
                [n.scope if n else None for n in nonces], [n.key if n else None for n in nonces],
                [aware(n.expires_at) if n else None for n in nonces], [x.target for x in o]]

    async def _together(self, sql: str, batch: list[Item]) -> list[Item]:
        """Place the batch in one call of `sql`; the orders it left (an error or 'KBSKP' row, or none at all)."""
        # one SKU's and one client's orders next to each other: batches of several processes take the shared rows
        # in the same order more often (a deadlock costs a retry of the whole batch, one by one)
        batch.sort(key=lambda it: (it[0].sku_id, it[0].client_id, it[0].currency))
        try:
            rows = await self.conns.fetch(sql, *self.args(batch))
        except Exception:  # noqa: BLE001 - nothing of the call was written: every order goes on to the next step
            return batch
        n = self.order_n
        grouped: dict[int, list[Any]] = {}
        failed: set[int] = set()
        for row in rows:
            if row[1] is not None:
                failed.add(row[0] - 1)
            else:
                grouped.setdefault(row[0] - 1, []).append(row[2:])
        for i, (_, _, _, future) in enumerate(batch):
            mine = grouped.get(i)
            if i in failed or not mine or future.done():
                continue
            items = tuple(item_from(r[n + 1:]) for r in mine if r[n + 1] is not None)
            future.set_result(ApiOrderPlaced(order_from(mine[0]), items, bool(mine[0][n])))
        return [it for i, it in enumerate(batch) if i in failed or i not in grouped]
