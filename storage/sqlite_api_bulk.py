"""Group-commit fast path for API orders on SQLite: the plain wallet-paid orders of one batch placed with a handful
of statements instead of some twenty each (storage/sqlite_api.py place_api_order, one by one).

Plain means: a fresh client order number and nonce, an active SKU of own stock (no per-user limit, no recharge, no
on-demand sourcing), a pool and a wallet that can serve every plain order of the batch. The rows written are the
ones the one-by-one body writes (nonce key, order, its four events, wallet debit and ledger line, payment event,
items, ledger, deliver outbox row, the client's number). Anything else, and any shortage found on the way, goes one
by one in the same transaction (the caller undoes this path's savepoint on any error). Serial order inside a batch
is free to choose: the calls were concurrent.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from storage import events
from storage.protocols.api import ApiOrderIn, ApiOrderPlaced
from storage.records import EncryptedCode, OnceKey, Order, OrderItem, OrderState, PaymentOutcome, StateGroups
from storage.sqlite_allocation import number_uses, take_code_uses
from storage.sqlite_orders import ALLOCATED, EVENT_INSERT, event_row, new_ref
from storage.sqltime import ts

#: an order's live items with their encrypted codes (the order id is the parameter)
ITEMS_SQL = ("SELECT i.item_no, c.id, c.digest, c.key_id, c.nonce, c.ciphertext, i.use_no FROM order_items i"
             " JOIN codes c ON c.id = i.code_id WHERE NOT i.released AND i.order_id =")
ITEMS_ORDER = " ORDER BY i.item_no"
#: the payment provider name of wallet-paid orders (their payment event's txn id is `client id:order number`)
WALLET_PROVIDER = "wallet"
_CHUNK = 400  # stay well under SQLite's host-parameter limit
# the constant parts of every order's rows, computed once (an enum's .value is a descriptor call: 14 per order)
_DELIVERING = OrderState.DELIVERING.value
_ALLOCATED_OUTCOME = PaymentOutcome.ALLOCATED.value
_PAID_STEP = (OrderState.RESERVED.value, OrderState.PAID.value, events.EventType.PAYMENT_RECEIVED.value)
#: event_row's columns after the order id and before `at`, of the three steps whose event never varies
_FIXED_STEPS = [event_row(0, frm, to, ev, "")[1:5] for frm, to, ev in (
    (None, OrderState.CREATED.value, events.checkout()),
    (OrderState.CREATED.value, OrderState.RESERVED.value, events.stock_held()),
    (OrderState.PAID.value, OrderState.DELIVERING.value, ALLOCATED))]

#: one place_api_order call's arguments after the connection: (order, now, state groups, nonce)
Args = tuple[ApiOrderIn, datetime, StateGroups, OnceKey | None]


def item_from(r: Any) -> OrderItem:
    return OrderItem(int(r[0]), EncryptedCode(int(r[1]), bytes(r[2]), r[3], bytes(r[4]), bytes(r[5])), int(r[6]))


class Shortage(Exception):
    """The batch cannot be placed on the fast path: undo it, go one by one."""


@dataclass
class _Plan:
    index: int
    o: ApiOrderIn
    at: str
    nonce: OnceKey | None
    pool_id: int
    need: int
    now: datetime
    order_id: int = 0
    ref: str = ""
    items: tuple[OrderItem, ...] = ()


def _marks(values: Sequence[object]) -> str:
    return ",".join("?" * len(values))


def _plain_skus(db: sqlite3.Connection, sku_ids: set[int]) -> dict[int, tuple[int, int]]:
    """SKU id -> (pool id, units) of the SKUs the fast path serves."""
    out: dict[int, tuple[int, int]] = {}
    for sku_id in sku_ids:
        row = db.execute(
            "SELECT s.pool_id, s.units FROM skus s JOIN products p ON p.id = s.product_id WHERE s.id = ?"
            " AND s.active = 1 AND p.active = 1 AND NOT s.per_user_limit AND s.target_rule IS NULL AND NOT EXISTS"
            " (SELECT 1 FROM sku_sourcing g WHERE g.sku_id = s.id AND g.on_demand = 1 AND g.sources <> '')",
            (sku_id,)).fetchone()
        if row is not None:
            out[sku_id] = (int(row[0]), int(row[1]))
    return out


def _known(db: sqlite3.Connection, args: Sequence[Args]) -> tuple[set[tuple[int, str]], set[tuple[str, str]]]:
    """The (client, order number) pairs and nonce keys of the batch that exist already."""
    numbers: set[tuple[int, str]] = set()
    by_client: dict[int, list[str]] = {}
    for o, _, _, _ in args:
        by_client.setdefault(o.client_id, []).append(o.client_order_no)
    for client_id, nos in by_client.items():
        for i in range(0, len(nos), _CHUNK):
            part = nos[i:i + _CHUNK]
            numbers |= {(client_id, r[0]) for r in db.execute(
                f"SELECT client_order_no FROM api_orders WHERE client_id = ? AND client_order_no IN ({_marks(part)})",
                (client_id, *part))}
    # by scope: the primary key leads with it, and `key IN (...)` alone scanned every live nonce
    by_scope: dict[str, set[str]] = {}
    for _, _, _, n in args:
        if n is not None:
            by_scope.setdefault(n.scope, set()).add(n.key)
    nonces: set[tuple[str, str]] = set()
    for scope, key_set in by_scope.items():
        keys = sorted(key_set)
        for i in range(0, len(keys), _CHUNK):
            part = keys[i:i + _CHUNK]
            nonces |= {(scope, r[0]) for r in db.execute(
                f"SELECT key FROM once_keys WHERE scope = ? AND key IN ({_marks(part)})", (scope, *part))}
    return numbers, nonces


def plan(db: sqlite3.Connection, args: Sequence[Args]) -> list[_Plan]:
    """The plain orders of the batch (the rest go one by one, after them)."""
    skus = _plain_skus(db, {o.sku_id for o, _, _, _ in args})
    numbers, nonces = _known(db, args)
    plans: list[_Plan] = []
    for i, (o, now, _, nonce) in enumerate(args):
        number, key = (o.client_id, o.client_order_no), (nonce.scope, nonce.key) if nonce else None
        plain = (o.sku_id in skus and o.target is None and o.quantity > 0 and number not in numbers
                 and (key is None or key not in nonces))
        numbers.add(number)  # a second use in the batch goes one by one, after the first is placed
        if key is not None:
            nonces.add(key)
        if plain:
            pool_id, units = skus[o.sku_id]
            plans.append(_Plan(i, o, ts(now), nonce, pool_id, o.quantity * units, now))
    return _affordable(db, plans)


def _affordable(db: sqlite3.Connection, plans: list[_Plan]) -> list[_Plan]:
    """The orders, in turn, that their wallet and pool can still serve after the ones before (the others go one by
    one after them, and are refused there or not as they would be alone)."""
    wallets: dict[tuple[int, str], int] = {}
    pools: dict[int, int] = {}
    fit: list[_Plan] = []
    for p in plans:
        w = (p.o.client_id, p.o.currency)
        if w not in wallets:
            wallets[w] = (db.execute("SELECT balance FROM api_wallets WHERE client_id = ? AND currency = ?",
                                     w).fetchone() or (0,))[0]
        if p.pool_id not in pools:
            pools[p.pool_id] = (db.execute("SELECT available FROM pools WHERE id = ?", (p.pool_id,)).fetchone()
                                or (0,))[0]
        if p.o.amount <= wallets[w] and p.need <= pools[p.pool_id]:
            wallets[w] -= p.o.amount
            pools[p.pool_id] -= p.need
            fit.append(p)
    return fit


def place_many(db: sqlite3.Connection, args: Sequence[Args]) -> dict[int, ApiOrderPlaced]:
    """Place the plain orders of `args` (index -> placed order); the others are left out. Raises on any doubt."""
    plans = plan(db, args)
    if not plans:
        return {}
    nonces = [(p.nonce.scope, p.nonce.key, ts(p.nonce.expires_at)) for p in plans if p.nonce is not None]
    db.executemany("INSERT INTO once_keys (scope, key, expires_at) VALUES (?,?,?)", nonces)
    _insert_orders(db, plans)
    _debit(db, plans)
    _allocate(db, plans)
    db.executemany("INSERT INTO api_orders (client_id, client_order_no, order_id, request_hash, callback_url,"
                   " created_at) VALUES (?,?,?,?,?,?)",
                   [(p.o.client_id, p.o.client_order_no, p.order_id, p.o.request_hash, p.o.callback_url, p.at)
                    for p in plans])
    return {p.index: ApiOrderPlaced(_order_of(p), p.items, True) for p in plans}


def _insert_orders(db: sqlite3.Connection, plans: list[_Plan]) -> None:
    """The orders (already delivering: paid and allocated below, in this transaction) and their pools' counters."""
    needs: dict[int, int] = {}
    for p in plans:
        needs[p.pool_id] = needs.get(p.pool_id, 0) + p.need
        p.ref = new_ref()
    for pool_id, need in needs.items():
        if db.execute("UPDATE pools SET available = available - ? WHERE id = ? AND available >= ?",
                      (need, pool_id, need)).rowcount != 1:
            raise Shortage(f"pool {pool_id}")
    first_id = db.execute("SELECT COALESCE(MAX(id), 0) FROM orders").fetchone()[0] + 1
    db.executemany(
        "INSERT INTO orders (ref, channel, user_id, chat_id, sku_id, pool_id, quantity, units, amount,"
        " currency, state, language, created_at, expires_at, updated_at, target, backorder)"
        " VALUES (?,'api',?,?,?,?,?,?,?,?,?,?,?,?,?,NULL,0)",
        [(p.ref, f"client:{p.o.client_id}", str(p.o.client_id), p.o.sku_id, p.pool_id, p.o.quantity,
          p.need // p.o.quantity, p.o.amount, p.o.currency, _DELIVERING, p.o.language, p.at,
          ts(p.o.expires_at), p.at) for p in plans])
    # rowids of a table without AUTOINCREMENT are max+1 in insertion order while we hold the write lock
    if db.execute("SELECT MAX(id) FROM orders").fetchone()[0] != first_id + len(plans) - 1:
        raise Shortage("order ids not contiguous")
    for n, p in enumerate(plans):
        p.order_id = first_id + n


def _debit(db: sqlite3.Connection, plans: list[_Plan]) -> None:
    """Each wallet once for the batch's total; a ledger line per order with the balance after it."""
    totals: dict[tuple[int, str], int] = {}
    for p in plans:
        totals[(p.o.client_id, p.o.currency)] = totals.get((p.o.client_id, p.o.currency), 0) + p.o.amount
    balance: dict[tuple[int, str], int] = {}
    for (client_id, currency), total in totals.items():
        row = db.execute("UPDATE api_wallets SET balance = balance - ? WHERE client_id = ? AND currency = ?"
                         " AND balance >= ? RETURNING balance", (total, client_id, currency, total)).fetchone()
        if row is None:
            raise Shortage(f"client {client_id} wallet {currency}")
        balance[(client_id, currency)] = int(row[0]) + total
    lines = []
    for p in plans:
        w = (p.o.client_id, p.o.currency)
        balance[w] -= p.o.amount
        lines.append((p.o.client_id, p.o.currency, -p.o.amount, balance[w], "order", p.order_id, p.o.client_order_no,
                      p.at))
    db.executemany("INSERT INTO api_wallet_ledger (client_id, currency, amount, balance_after, kind, order_id, note,"
                   " at) VALUES (?,?,?,?,?,?,?,?)", lines)


def _allocate(db: sqlite3.Connection, plans: list[_Plan]) -> None:
    """Payment event, codes, items, ledger, order events and the deliver outbox row of every order."""
    by_pool: dict[int, list[_Plan]] = {}
    for p in plans:
        by_pool.setdefault(p.pool_id, []).append(p)
    items, ledger, order_events, outbox, payments = [], [], [], [], []
    for pool_id, mine in by_pool.items():
        need = sum(p.need for p in mine)
        raw = take_code_uses(db, pool_id, need, max(p.at for p in mine))
        if len(raw) < need:
            raise Shortage(f"pool {pool_id} codes")
        numbers = number_uses(db, [c[0] for c in raw])
        taken = [(cid, n, cost, ccy, code) for (cid, cost, ccy, code), n in zip(raw, numbers, strict=True)]
        for p in mine:
            got, taken = taken[:p.need], taken[p.need:]
            o, at, txn = p.o, p.at, f"{p.o.client_id}:{p.o.client_order_no}"
            items += [(p.order_id, i + 1, c, u, cost, ccy) for i, (c, u, cost, ccy, _) in enumerate(got)]
            p.items = tuple(OrderItem(i + 1, code, u) for i, (_, u, _, _, code) in enumerate(got))
            ledger.append((p.order_id, o.sku_id, "api", "sale", o.currency, o.amount, at))
            costs: dict[str, int] = {}
            for _, _, cost, ccy, _ in got:
                costs[ccy] = costs.get(ccy, 0) + cost
            ledger += [(p.order_id, o.sku_id, "api", "cost", ccy, -t, at) for ccy, t in costs.items() if t]
            paid = events.payment_received(provider=WALLET_PROVIDER, txn=txn).params_json
            created, held, allocated = _FIXED_STEPS
            order_events += [(p.order_id, *created, at), (p.order_id, *held, at),
                             (p.order_id, *_PAID_STEP, paid, at), (p.order_id, *allocated, at)]
            outbox.append((p.order_id, "deliver", "api", str(o.client_id), "", at, at))
            payments.append((WALLET_PROVIDER, txn, p.ref, o.amount, o.currency, at, at,
                             _ALLOCATED_OUTCOME, p.order_id))
    db.executemany("INSERT INTO payment_events (provider, provider_txn_id, order_ref, amount, currency, fee, payer,"
                   " received_at, applied_at, outcome, order_id) VALUES (?,?,?,?,?,0,'',?,?,?,?)", payments)
    db.executemany("INSERT INTO order_items (order_id, item_no, code_id, use_no, unit_cost, cost_currency)"
                   " VALUES (?,?,?,?,?,?)", items)
    db.executemany("INSERT INTO ledger (order_id, sku_id, channel, kind, currency, amount, at)"
                   " VALUES (?,?,?,?,?,?,?)", ledger)
    db.executemany(EVENT_INSERT, order_events)
    db.executemany("INSERT INTO outbox (order_id, kind, channel, chat_id, payload, next_attempt_at, created_at)"
                   " VALUES (?,?,?,?,?,?,?)", outbox)


def _order_of(p: _Plan) -> Order:
    """The order as _insert_orders wrote it (the row read back would say the same: a test compares them)."""
    o = p.o
    return Order(p.order_id, p.ref, "api", f"client:{o.client_id}", str(o.client_id), o.sku_id, p.pool_id,
                 o.quantity, p.need // o.quantity, o.amount, o.currency, OrderState.DELIVERING, _utc(p.now),
                 _utc(o.expires_at), o.language, None)


def _utc(dt: datetime) -> datetime:
    return dt if dt.tzinfo is UTC else dt.astimezone(UTC)
