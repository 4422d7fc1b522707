"""PostgreSQL orders, payments, delivery outbox, refunds and the ledger (a mixin of PostgresStore): each compound
verb one PL/pgSQL function call (migrations/postgres)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from functools import partial

import asyncpg

from storage.errors import UnknownRecord
from storage.events import EventType, NewOrderEvent, OrderEvent
from storage.events import read as read_event
from storage.postgres_base import (
    ORDER_COLS,
    PostgresBase,
    answer_alone,
    applied_from,
    aware,
    code_from,
    even_batch,
    order_from,
    start_flush,
)
from storage.postgres_reads import NotedOrderReads
from storage.records import (
    DUPLICATE_PAYMENT,
    DUPLICATE_REFUND,
    LedgerLine,
    NewOrder,
    Order,
    OrderItem,
    OrderState,
    OutboxRow,
    PaymentApplied,
    PaymentEventIn,
    PaymentOutcome,
)
from storage.sqlite_orders import new_ref

#: the state a review order was held from: the source of its latest move (not note) into review
HELD_FROM = ("SELECT from_state FROM order_events WHERE order_id = $1 AND to_state = 'review'"
             " AND from_state <> to_state ORDER BY id DESC LIMIT 1")


async def write_note(pool: asyncpg.Pool, order_id: int, note: NewOrderEvent, at: datetime, once: bool) -> bool:
    """A note in the order's current state (the order row locked first); with `once`, not when one of its type is
    there already."""
    async with pool.acquire() as conn, conn.transaction():
        state = await conn.fetchval("SELECT state FROM orders WHERE id = $1 FOR UPDATE", order_id)
        if state is None:
            raise UnknownRecord(f"order {order_id}")
        if once and await conn.fetchval("SELECT 1 FROM order_events WHERE order_id = $1 AND type = $2 LIMIT 1",
                                        order_id, note.type.value) is not None:
            return False
        await conn.execute("INSERT INTO order_events (order_id, from_state, to_state, type, params, at)"
                           " VALUES ($1, $2, $2, $3, $4::jsonb, $5)", order_id, state, note.type.value,
                           note.params_json, at)
        return True


class PaymentBatcher:
    """Coalesces concurrent `receive_payment` calls into kb_receive_batch calls (migration 0017).

    A caller queues its event and awaits its own future. A flush takes up to BATCH_MAX queued events right after
    the callers that were ready have queued theirs (one event-loop turn: no timer, no added latency when idle);
    up to IN_FLIGHT batches run at once, and a finished flush takes the next batch. Each event is applied in its
    own subtransaction: one that raises is retried alone through kb_receive (so its caller gets its own error,
    mapped as ever), its batch-mates keep their results. When the batch call itself fails (connection lost,
    deadlock of the whole call), every event is retried alone: kb_receive is idempotent by provider transaction
    id, so an event the lost call did commit comes back with its first outcome.
    """

    BATCH_MAX = 32  # subtransactions per batch stay inside PostgreSQL's per-backend subxid cache (64)
    IN_FLIGHT = 4

    def __init__(self, store: PgSales) -> None:
        self.store = store
        self.conns = store.kept_connections()  # its own: kb_receive_batch stays compiled in their backends
        self.queue: list[tuple[PaymentEventIn, datetime, asyncio.Future[PaymentApplied]]] = []
        self.flushing = 0
        #: order refs and (provider, transaction id) keys of the batches in flight, with their counts
        self.busy: dict[object, int] = {}

    async def submit(self, event: PaymentEventIn, now: datetime) -> PaymentApplied:
        aware(now)
        if event.received_at is not None:
            aware(event.received_at)
        future: asyncio.Future[PaymentApplied] = asyncio.get_running_loop().create_future()
        self.queue.append((event, now, future))
        if self.flushing < self.IN_FLIGHT:
            self.flushing += 1
            start_flush(self._flush())
        return await future

    def _take(self) -> list[tuple[PaymentEventIn, datetime, asyncio.Future[PaymentApplied]]]:
        """The queue's head, up to BATCH_MAX events, stopping before the first one whose order or transaction id
        is in a batch still in flight: events of one order keep their arrival order (a second payment never
        overtakes the first), as one process's serial calls and SQLite's group commit keep it."""
        n = 0
        size = even_batch(len(self.queue), self.BATCH_MAX)
        while n < min(size, len(self.queue)):
            event = self.queue[n][0]
            if event.order_ref in self.busy or (event.provider, event.provider_txn_id) in self.busy:
                break
            n += 1
        batch, self.queue = self.queue[:n], self.queue[n:]
        return batch

    def _mark(self, batch: list[tuple[PaymentEventIn, datetime, asyncio.Future[PaymentApplied]]], step: int) -> None:
        for event, _, _ in batch:
            for key in (event.order_ref, (event.provider, event.provider_txn_id)):
                self.busy[key] = self.busy.get(key, 0) + step
                if not self.busy[key]:
                    del self.busy[key]

    async def _flush(self) -> None:
        try:
            await asyncio.sleep(0)  # let the callers that are ready queue theirs first
            # a head held back by a batch in flight is taken by that batch's flush when it is done
            while batch := self._take():
                self._mark(batch, 1)
                try:
                    await self._run(batch)
                finally:
                    self._mark(batch, -1)
        finally:
            self.flushing -= 1

    async def _run(self, batch: list[tuple[PaymentEventIn, datetime, asyncio.Future[PaymentApplied]]]) -> None:
        alone: list[tuple[PaymentEventIn, datetime, asyncio.Future[PaymentApplied]]] = []
        if len(batch) == 1:
            alone = batch
        else:
            try:
                rows = await self.conns.fetch(
                    "SELECT b_index, b_event, b_outcome, b_order, b_detail, b_error FROM kb_receive_batch("
                    "$1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::bigint[], $7::text[],"
                    " $8::timestamptz[], $9::timestamptz[], $10::text[])",
                    [e.provider for e, _, _ in batch], [e.provider_txn_id for e, _, _ in batch],
                    [e.order_ref for e, _, _ in batch], [e.amount for e, _, _ in batch],
                    [e.currency for e, _, _ in batch], [e.fee for e, _, _ in batch], [e.payer for e, _, _ in batch],
                    [e.received_at or now for e, now, _ in batch], [now for _, now, _ in batch],
                    self.store._payable)
            except Exception:
                alone = batch
            else:
                answered: set[int] = set()
                for r in rows:
                    item = batch[r[0] - 1]
                    answered.add(r[0] - 1)
                    if r[5] is not None:
                        alone.append(item)
                    elif not item[2].done():
                        item[2].set_result(PaymentApplied(r[1], PaymentOutcome(r[2]), r[3], r[4] or ""))
                alone += [item for n, item in enumerate(batch) if n not in answered]
        for event, now, future in alone:
            await answer_alone(future, partial(self.store.receive_payment_one, event, now))


class PgSales(PostgresBase):
    """Order, payment, outbox, refund and ledger verbs of PostgresStore (mixed in)."""

    _payment_batcher: PaymentBatcher | None = None
    _noted_reads: NotedOrderReads | None = None

    async def reserve(self, order: NewOrder, now: datetime) -> Order:
        ref = new_ref()
        r = await self._call(f"SELECT {ORDER_COLS} FROM kb_reserve($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)",
                             ref, order.channel, order.user_id, order.chat_id, order.sku_id, order.quantity,
                             order.amount, order.currency, aware(order.expires_at), order.language, aware(now),
                             self._closed, order.target)
        return order_from(r)

    async def transition(self, order_id: int, allowed_from: Sequence[OrderState], to: OrderState,
                         event: NewOrderEvent, now: datetime) -> bool:
        if event.is_note:
            raise ValueError(f"{event.type} is a note: use add_order_note")
        r = await self._call("SELECT kb_transition($1, $2, $3, $4, $5::jsonb, $6, $7)", order_id,
                             [OrderState(s).value for s in allowed_from], OrderState(to).value, event.type.value,
                             event.params_json, aware(now), self._holding)
        return bool(r[0])

    async def order_by_id(self, order_id: int) -> Order | None:
        r = await self.pool.fetchrow(f"SELECT {ORDER_COLS} FROM orders WHERE id = $1", order_id)
        return order_from(r) if r else None

    async def order_by_ref(self, ref: str) -> Order | None:
        r = await self.pool.fetchrow(f"SELECT {ORDER_COLS} FROM orders WHERE ref = $1", ref)
        return order_from(r) if r else None

    async def order_by_ref_noted(self, ref: str, note: EventType) -> tuple[Order, OrderEvent | None] | None:
        """Concurrent calls go out together as one query (storage/postgres_reads.py)."""
        if self._noted_reads is None:
            self._noted_reads = NotedOrderReads(self.pool)
        return await self._noted_reads.get(ref, note)

    async def orders_for_user(self, channel: str, user_id: str, limit: int, offset: int) -> list[Order]:
        rows = await self.pool.fetch(f"SELECT {ORDER_COLS} FROM orders WHERE channel = $1 AND user_id = $2"
                                     " ORDER BY id DESC LIMIT $3 OFFSET $4", channel, user_id, limit, offset)
        return [order_from(r) for r in rows]

    async def orders_in_state(self, state: OrderState, limit: int) -> list[Order]:
        rows = await self.pool.fetch(f"SELECT {ORDER_COLS} FROM orders WHERE state = $1 ORDER BY id LIMIT $2",
                                     state.value, limit)
        return [order_from(r) for r in rows]

    async def order_events(self, order_id: int) -> list[OrderEvent]:
        rows = await self.pool.fetch("SELECT order_id, from_state, to_state, type, params::text, at FROM order_events"
                                     " WHERE order_id = $1 ORDER BY id", order_id)
        return [read_event(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]

    async def last_order_event(self, order_id: int, event_type: EventType) -> OrderEvent | None:
        r = await self.pool.fetchrow("SELECT order_id, from_state, to_state, type, params::text, at FROM order_events"
                                     " WHERE order_id = $1 AND type = $2 ORDER BY id DESC LIMIT 1", order_id,
                                     event_type.value)
        return read_event(r[0], r[1], r[2], r[3], r[4], r[5]) if r else None

    async def order_items(self, order_id: int) -> list[OrderItem]:
        rows = await self.pool.fetch(
            "SELECT i.item_no, c.id, c.digest, c.key_id, c.nonce, c.ciphertext, i.use_no FROM order_items i"
            " JOIN codes c ON c.id = i.code_id WHERE i.order_id = $1 AND NOT i.released ORDER BY i.item_no", order_id)
        return [OrderItem(r[0], code_from(r, 1), r[6]) for r in rows]

    async def expire_reservations(self, now: datetime, limit: int) -> list[int]:
        rows = await self._fetch("SELECT kb_expire($1, $2, $3)", aware(now), limit, self._holding)
        return [int(r[0]) for r in rows]

    # -- payments ----------------------------------------------------------
    async def record_payment(self, event: PaymentEventIn, now: datetime) -> tuple[int, bool]:
        r = await self._call("SELECT event_id, fresh FROM kb_record_payment($1,$2,$3,$4,$5,$6,$7,$8)",
                             event.provider, event.provider_txn_id, event.order_ref, event.amount, event.currency,
                             event.fee, event.payer, aware(event.received_at or now))
        return int(r[0]), bool(r[1])

    async def receive_payment(self, event: PaymentEventIn, now: datetime) -> PaymentApplied:
        """Concurrent calls of this process go out together as one kb_receive_batch call (PaymentBatcher)."""
        if self._payment_batcher is None:
            self._payment_batcher = PaymentBatcher(self)
        return await self._payment_batcher.submit(event, now)

    async def receive_payment_one(self, event: PaymentEventIn, now: datetime) -> PaymentApplied:
        """One event, one kb_receive call: the batch's fallback for an event that raised (its own error here)."""
        r = await self._call(
            "SELECT event_id, outcome, order_id, detail FROM kb_receive($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)",
            event.provider, event.provider_txn_id, event.order_ref, event.amount, event.currency, event.fee,
            event.payer, aware(event.received_at or now), aware(now), self._payable)
        return applied_from(r)

    async def apply_payment(self, event_id: int, now: datetime) -> PaymentApplied:
        r = await self._call("SELECT event_id, outcome, order_id, detail FROM kb_apply_payment($1, $2, $3)", event_id,
                             aware(now), self._payable)
        return applied_from(r)

    async def settle_duplicate_payment(self, event_id: int, now: datetime) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            r = await conn.fetchrow(
                "UPDATE payment_events e SET outcome = 'duplicate' FROM orders o WHERE e.id = $1"
                " AND e.outcome = 'review' AND o.id = e.order_id RETURNING o.id, o.sku_id, o.channel, e.amount,"
                " e.currency", event_id)
            if r is None:
                return False
            await conn.executemany(
                "INSERT INTO ledger (order_id, sku_id, channel, kind, currency, amount, at)"
                " VALUES ($1,$2,$3,$4,$5,$6,$7)",
                [(r[0], r[1], r[2], kind, r[4], sign * int(r[3]), aware(now))
                 for kind, sign in ((DUPLICATE_PAYMENT, 1), (DUPLICATE_REFUND, -1))])
        return True

    async def unapplied_payments(self, limit: int) -> list[int]:
        rows = await self.pool.fetch("SELECT id FROM payment_events WHERE applied_at IS NULL ORDER BY id LIMIT $1",
                                     limit)
        return [r[0] for r in rows]

    async def order_payment(self, order_id: int) -> tuple[str, str, int] | None:
        r = await self.pool.fetchrow(
            "SELECT provider, provider_txn_id, amount FROM payment_events WHERE order_id = $1"
            " AND outcome IN ('allocated', 'failed', 'review') ORDER BY outcome = 'review', id LIMIT 1", order_id)
        return (r[0], r[1], int(r[2])) if r else None

    # -- delivery outbox ---------------------------------------------------
    async def claim_outbox(self, now: datetime, lease_until: datetime, limit: int) -> list[OutboxRow]:
        rows = await self._fetch("SELECT * FROM kb_claim_outbox($1, $2, $3)", aware(now), aware(lease_until), limit)
        return [OutboxRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], bool(r[7])) for r in rows]

    async def complete_outbox(self, outbox_id: int, now: datetime) -> None:
        await self._call("SELECT kb_complete_outbox($1, $2)", outbox_id, aware(now))

    async def retry_outbox(self, outbox_id: int, next_at: datetime, error: str) -> None:
        await self.pool.execute("UPDATE outbox SET locked_until = NULL, next_attempt_at = $1, last_error = $2"
                                " WHERE id = $3", aware(next_at), error[:200], outbox_id)

    async def renew_outbox(self, outbox_ids: Sequence[int], lease_until: datetime) -> int:
        if not outbox_ids:
            return 0
        status = await self.pool.execute("UPDATE outbox SET locked_until = $1 WHERE id = ANY($2::bigint[])"
                                         " AND status = 'pending' AND locked_until IS NOT NULL",
                                         aware(lease_until), list(outbox_ids))
        return int(status.split()[-1])

    async def fail_outbox(self, outbox_id: int, now: datetime, error: str) -> None:
        await self.pool.execute("UPDATE outbox SET status = 'failed', locked_until = NULL, done_at = $1,"
                                " last_error = $2 WHERE id = $3", aware(now), error[:200], outbox_id)

    async def enqueue_outbox(self, order_id: int, kind: str, payload: str, now: datetime) -> int:
        r = await self._call("SELECT kb_enqueue_outbox($1, $2, $3, $4)", order_id, kind, payload, aware(now))
        return int(r[0])

    async def pending_outbox(self) -> int:
        return int(await self.pool.fetchval("SELECT COUNT(*) FROM outbox WHERE status = 'pending'"))

    async def refund_queued(self, order_id: int) -> bool:
        return await self.pool.fetchval("SELECT 1 FROM outbox WHERE order_id = $1 AND kind = 'refund'",
                                        order_id) is not None

    async def order_state_counts(self) -> list[tuple[str, str, int]]:
        rows = await self.pool.fetch("SELECT channel, state, COUNT(*) FROM orders GROUP BY channel, state")
        return [(str(r[0]), str(r[1]), int(r[2])) for r in rows]

    # -- refunds and ledger ------------------------------------------------
    async def refund(self, order_id: int, event: NewOrderEvent, now: datetime) -> bool:
        r = await self._call("SELECT kb_refund($1, $2, $3::jsonb, $4, $5, $6)", order_id, event.type.value,
                             event.params_json, aware(now), self._refundable, self._holding)
        return bool(r[0])

    async def ledger(self, since: datetime, until: datetime) -> list[LedgerLine]:
        # byte order like SQLite's, whatever the database collation
        rows = await self.pool.fetch(
            "SELECT sku_id, channel, kind, currency, SUM(amount), COUNT(DISTINCT order_id) FROM ledger"
            " WHERE at >= $1 AND at < $2 GROUP BY sku_id, channel, kind, currency"
            ' ORDER BY sku_id, channel COLLATE "C", kind COLLATE "C", currency COLLATE "C"',
            aware(since), aware(until))
        return [LedgerLine(r[0], r[1], r[2], r[3], int(r[4]), r[5]) for r in rows]

    async def reopen_review(self, order_id: int, event: NewOrderEvent, now: datetime) -> int | None:
        """Approve a held order: back to the state it was held from, its held payment made applicable again."""
        at = aware(now)
        async with self.pool.acquire() as conn, conn.transaction():
            state = await conn.fetchval("SELECT state FROM orders WHERE id = $1 FOR UPDATE", order_id)
            ev = await conn.fetchval("SELECT id FROM payment_events WHERE order_id = $1 AND outcome = 'review'"
                                     " ORDER BY id LIMIT 1", order_id)
            before = await conn.fetchval(HELD_FROM, order_id)
            if state != "review" or ev is None or before not in self._states.payable:
                return None
            await conn.execute("UPDATE orders SET state = $1, updated_at = $2 WHERE id = $3", before, at, order_id)
            await conn.execute("INSERT INTO order_events (order_id, from_state, to_state, type, params, at)"
                               " VALUES ($1, 'review', $2, $3, $4::jsonb, $5)", order_id, before, event.type.value,
                               event.params_json, at)
            await conn.execute("UPDATE payment_events SET applied_at = NULL, outcome = NULL, detail = $1"
                               " WHERE id = $2", "approved after review", ev)
            return int(ev)


    async def add_order_note(self, order_id: int, event: NewOrderEvent, now: datetime) -> None:
        if not event.is_note:
            raise ValueError(f"{event.type} changes the order's state: use transition")
        await write_note(self.pool, order_id, event, aware(now), once=False)
