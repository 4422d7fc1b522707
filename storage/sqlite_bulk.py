"""Group-commit fast path for payments on SQLite: many `receive_payment` calls applied with a handful of
statements instead of a dozen each.

Only plain cases take it (fresh transaction id, live reservation, exact amount); everything else, and any
shortage, goes through `sqlite_orders.receive_payment` one by one in the same transaction. Serial order
inside a batch is free to choose: the calls were concurrent.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from storage import events as order_events
from storage.records import OrderState, PaymentApplied, PaymentEventIn, PaymentOutcome, StateGroups
from storage.sqlite_allocation import number_uses, take_uses
from storage.sqlite_orders import ALLOCATED, EVENT_INSERT, event_row
from storage.sqltime import ts

_CHUNK = 400  # stay well under SQLite's host-parameter limit


@dataclass
class _Plan:
    index: int
    event: PaymentEventIn
    order_id: int
    state: str
    pool_id: int
    need: int
    sku_id: int
    channel: str
    chat_id: str


def _in(values: Sequence[object]) -> str:
    return ",".join("?" * len(values))


def _existing_keys(db: sqlite3.Connection, events: Sequence[PaymentEventIn]) -> set[tuple[str, str]]:
    """The (provider, txn id) keys of `events` already recorded. By provider: the unique index leads with it, and
    `provider_txn_id IN (...)` alone scanned every payment the shop ever took."""
    found: set[tuple[str, str]] = set()
    by_provider: dict[str, set[str]] = {}
    for e in events:
        by_provider.setdefault(e.provider, set()).add(e.provider_txn_id)
    for provider, txn_set in by_provider.items():
        txns = sorted(txn_set)
        for i in range(0, len(txns), _CHUNK):
            part = txns[i : i + _CHUNK]
            found |= {(provider, t) for (t,) in db.execute(
                "SELECT provider_txn_id FROM payment_events WHERE provider = ?"
                f" AND provider_txn_id IN ({_in(part)})", (provider, *part))}
    return found


def _orders(db: sqlite3.Connection, refs: list[str]) -> dict[str, tuple[object, ...]]:
    out: dict[str, tuple[object, ...]] = {}
    for i in range(0, len(refs), _CHUNK):
        part = refs[i : i + _CHUNK]
        for row in db.execute(
            "SELECT ref, id, state, pool_id, quantity * units, amount, currency, sku_id, channel, chat_id, backorder"
            f" FROM orders WHERE ref IN ({_in(part)})", part,
        ):
            out[row[0]] = tuple(row[1:])
    return out


def plan(db: sqlite3.Connection, events: Sequence[PaymentEventIn], g: StateGroups
         ) -> tuple[list[_Plan], list[int]]:
    """Split into plain payments (fast) and the rest (indexes for the one-by-one path)."""
    existing = _existing_keys(db, events)
    orders = _orders(db, sorted({e.order_ref for e in events}))
    fast: list[_Plan] = []
    slow: list[int] = []
    seen_keys: set[tuple[str, str]] = set()
    seen_refs: set[str] = set()
    for i, e in enumerate(events):
        key = (e.provider, e.provider_txn_id)
        o = orders.get(e.order_ref)
        plain = (key not in existing and key not in seen_keys and e.order_ref not in seen_refs and o is not None
                 and o[1] in g.holding and (o[4], o[5]) == (e.amount, e.currency) and not o[9])  # backorder: slow
        seen_keys.add(key)
        seen_refs.add(e.order_ref)
        if plain and o is not None:
            oid, state, pool_id, need, _, _, sku_id, channel, chat_id, _ = o
            fast.append(_Plan(i, e, int(oid), str(state), int(pool_id), int(need), int(sku_id),  # type: ignore[call-overload]
                              str(channel), str(chat_id)))
        else:
            slow.append(i)
    return fast, slow


class Shortage(Exception):
    """A pool could not serve its held reservations: undo the fast path, go one by one."""


_PAID = OrderState.PAID.value
_DELIVERING = OrderState.DELIVERING.value
_ALLOCATED_OUTCOME = PaymentOutcome.ALLOCATED.value


def apply_fast(db: sqlite3.Connection, fast: list[_Plan], now: datetime) -> dict[int, PaymentApplied]:
    at = ts(now)
    allocated_json = ALLOCATED.params_json  # the same for every order of the batch
    by_pool: dict[int, list[_Plan]] = {}
    for p in fast:
        by_pool.setdefault(p.pool_id, []).append(p)
    items, ledger, updates, events, outbox = [], [], [], [], []
    claims: dict[int, list[tuple[int, int, int, str]]] = {}
    for pool_id, plans in by_pool.items():
        need = sum(p.need for p in plans)
        raw = take_uses(db, pool_id, need, at)
        if len(raw) < need:
            raise Shortage(f"pool {pool_id}")
        claims[pool_id] = [(cid, 0, cost, ccy) for cid, cost, ccy in raw]
    flat = [c[0] for pool_claims in claims.values() for c in pool_claims]
    numbers = iter(number_uses(db, flat))
    for pool_id, plans in by_pool.items():
        taken = [(cid, next(numbers), cost, ccy) for cid, _, cost, ccy in claims[pool_id]]
        for p in plans:
            mine, taken = taken[: p.need], taken[p.need :]
            e = p.event
            paid = order_events.payment_received(provider=e.provider, txn=e.provider_txn_id)
            items += [(p.order_id, n + 1, c, u, cost, ccy) for n, (c, u, cost, ccy) in enumerate(mine)]
            ledger.append((p.order_id, p.sku_id, p.channel, "sale", e.currency, e.amount, at))
            if e.fee:
                ledger.append((p.order_id, p.sku_id, p.channel, "fee", e.currency, -e.fee, at))
            costs: dict[str, int] = {}
            for _, _, cost, ccy in mine:
                costs[ccy] = costs.get(ccy, 0) + cost
            ledger += [(p.order_id, p.sku_id, p.channel, "cost", ccy, -t, at) for ccy, t in costs.items() if t]
            updates.append((_DELIVERING, at, p.order_id))
            events += [event_row(p.order_id, p.state, _PAID, paid, at),
                       (p.order_id, _PAID, _DELIVERING, ALLOCATED.type.value, allocated_json, at)]
            outbox.append((p.order_id, "deliver", p.channel, p.chat_id, "", at, at))
    first_id = db.execute("SELECT COALESCE(MAX(id), 0) FROM payment_events").fetchone()[0] + 1
    db.executemany(
        "INSERT INTO payment_events (provider, provider_txn_id, order_ref, amount, currency, fee, payer, received_at,"
        " applied_at, outcome, order_id) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        [(p.event.provider, p.event.provider_txn_id, p.event.order_ref, p.event.amount, p.event.currency,
          p.event.fee, p.event.payer, at if p.event.received_at is None else ts(p.event.received_at), at,
          _ALLOCATED_OUTCOME, p.order_id) for p in fast],
    )
    db.executemany("INSERT INTO order_items (order_id, item_no, code_id, use_no, unit_cost, cost_currency)"
                   " VALUES (?,?,?,?,?,?)", items)
    db.executemany("INSERT INTO ledger (order_id, sku_id, channel, kind, currency, amount, at)"
                   " VALUES (?,?,?,?,?,?,?)", ledger)
    db.executemany("UPDATE orders SET state = ?, updated_at = ? WHERE id = ?", updates)
    db.executemany(EVENT_INSERT, events)
    db.executemany("INSERT INTO outbox (order_id, kind, channel, chat_id, payload, next_attempt_at, created_at)"
                   " VALUES (?,?,?,?,?,?,?)", outbox)
    # rowids of a table without AUTOINCREMENT are max+1 in insertion order while we hold the write lock
    last = db.execute("SELECT MAX(id) FROM payment_events").fetchone()[0]
    if last != first_id + len(fast) - 1:
        raise Shortage("payment event ids not contiguous")
    return {p.index: PaymentApplied(first_id + n, PaymentOutcome.ALLOCATED, p.order_id)
            for n, p in enumerate(fast)}
