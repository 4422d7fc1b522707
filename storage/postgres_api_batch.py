"""PostgreSQL API orders in batches: concurrent `place_api_order` calls of one process go out together as one
kb_api_order_batch call (migration 0019), the way PaymentBatcher sends payments (storage/postgres_sales.py).

Why: every API order updates its pool's counter and its client's wallet, rows all orders of one SKU and client
share; one transaction per order held them until its own commit, so orders queued on them one commit at a time.
A batch places its orders first (each in its own subtransaction, checked against what the batch's earlier orders
take) and updates those rows once, at its end, so they are locked only from there to the commit and several
batches overlap. An order whose subtransaction raised is placed again alone (kb_api_order_rows, its error mapped
as ever); its batch-mates keep their results. When the batch call itself fails (connection lost, a deadlock, a
pool or wallet total that no longer fits at the end), every order is placed again alone: placing is idempotent by
the client's order number, so an order a lost call did commit comes back as it was (its nonce, claimed by that
commit, then answers NONCE_REUSED as it would).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import partial
from typing import Any

import asyncpg

from storage.postgres_base import answer_alone, aware, order_from, start_flush
from storage.protocols.api import ApiOrderIn, ApiOrderPlaced
from storage.records import OnceKey
from storage.sqlite_api_bulk import item_from
from storage.sqlite_orders import new_ref

PlaceOne = Callable[[ApiOrderIn, datetime, OnceKey | None], Awaitable[ApiOrderPlaced]]
Item = tuple[ApiOrderIn, datetime, OnceKey | None, "asyncio.Future[ApiOrderPlaced]"]


class ApiOrderBatcher:
    BATCH_MAX = 32  # subtransactions per batch stay inside PostgreSQL's per-backend subxid cache (64)
    IN_FLIGHT = 4

    def __init__(self, pool: Callable[[], asyncpg.Pool], placed_cols: str, order_n: int, closed: list[str],
                 payable: list[str], one: PlaceOne) -> None:
        self.pool = pool
        self.sql = (f"SELECT b_index, b_error, {placed_cols} FROM kb_api_order_batch($1::bigint[], $2::text[],"
                    " $3::text[], $4::text[], $5::text[], $6::bigint[], $7::bigint[], $8::bigint[], $9::text[],"
                    " $10::text[], $11::timestamptz[], $12::timestamptz[], $13::text[], $14::text[], $15::text[],"
                    " $16::text[], $17::timestamptz[], $18::text[]) r")
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
                batch, self.queue = self.queue[:self.BATCH_MAX], self.queue[self.BATCH_MAX:]
                await self._run(batch)
        finally:
            self.flushing -= 1

    async def _run(self, batch: list[Item]) -> None:
        alone = batch if len(batch) == 1 else await self._together(batch)
        for order, now, nonce, future in alone:
            await answer_alone(future, partial(self.one, order, now, nonce))

    async def _together(self, batch: list[Item]) -> list[Item]:
        """Place the batch in one call; the orders left to place alone."""
        # one SKU's and one client's orders next to each other: batches of several processes take the shared rows
        # in the same order more often (a deadlock costs a retry of the whole batch, one by one)
        batch.sort(key=lambda it: (it[0].sku_id, it[0].client_id, it[0].currency))
        o = [it[0] for it in batch]
        nonces = [it[2] for it in batch]
        try:
            rows = await self.pool().fetch(
                self.sql, [x.client_id for x in o], [x.client_order_no for x in o], [x.request_hash for x in o],
                [x.callback_url for x in o], [new_ref() for _ in o], [x.sku_id for x in o],
                [x.quantity for x in o], [x.amount for x in o], [x.currency for x in o], [x.language for x in o],
                [aware(x.expires_at) for x in o], [it[1] for it in batch], self.closed, self.payable,
                [n.scope if n else None for n in nonces], [n.key if n else None for n in nonces],
                [aware(n.expires_at) if n else None for n in nonces], [x.target for x in o])
        except Exception:  # noqa: BLE001 - every order of the batch is placed again alone, with its own errors
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

