"""SQLite order-API verbs (a mixin of SqliteStore): API clients, wallets and their ledger, the wallet-paid order in
one transaction body (storage/sqlite_orders.py reserve + receive_payment + the debit; the plain orders of one
group commit together, storage/sqlite_api_bulk.py), Idempotency-Key rows."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any

from storage import sqlite_orders as tx
from storage.errors import InsufficientStock
from storage.protocols.api import (
    ApiClient,
    ApiOrderIn,
    ApiOrderLink,
    ApiOrderPlaced,
    DuplicateOrderNo,
    IdemClaim,
    IdemState,
    InsufficientBalance,
    NameTaken,
    NonceUsed,
    Sealed,
    WalletLine,
)
from storage.records import (
    NewOrder,
    OnceKey,
    PaymentEventIn,
    PaymentOutcome,
    StateGroups,
)
from storage.sqlite_api_bulk import ITEMS_ORDER, ITEMS_SQL, WALLET_PROVIDER, item_from, place_many
from storage.sqlite_base import BULK_BODIES, SqliteBase
from storage.sqlite_sales import _ORDER_COLS as ORDER_COLS
from storage.sqlite_sales import _order as order_from
from storage.sqlite_shared import _claim_once
from storage.sqltime import from_ts, ts

CLIENT_COLS = "id, key_id, name, scopes, secret_key_id, secret_nonce, secret_ct, created_at, revoked_at"
LINE_COLS = "id, client_id, currency, amount, balance_after, kind, order_id, note, at"
LINK_COLS = "client_id, client_order_no, order_id, request_hash, callback_url"


def client_from(r: Any) -> ApiClient:
    return ApiClient(int(r[0]), r[1], r[2], tuple(s for s in r[3].split(",") if s),
                     Sealed(r[4], bytes(r[5]), bytes(r[6])), _time(r[7]), _time(r[8]) if r[8] else None)


def line_from(r: Any) -> WalletLine:
    return WalletLine(int(r[0]), int(r[1]), r[2], int(r[3]), int(r[4]), r[5], r[6], r[7], _time(r[8]))


def link_from(r: Any) -> ApiOrderLink:
    return ApiOrderLink(int(r[0]), r[1], int(r[2]), r[3], r[4])


def _time(value: Any) -> datetime:
    return value if isinstance(value, datetime) else from_ts(value)


def _create_client(db: sqlite3.Connection, key_id: str, name: str, scopes: tuple[str, ...], secret: Sealed,
                   now: datetime) -> ApiClient:
    try:
        row = db.execute(
            f"INSERT INTO api_clients (key_id, name, scopes, secret_key_id, secret_nonce, secret_ct, created_at)"
            f" VALUES (?,?,?,?,?,?,?) RETURNING {CLIENT_COLS}",
            (key_id, name, ",".join(scopes), secret.key_id, secret.nonce, secret.ciphertext, ts(now))).fetchone()
    except sqlite3.IntegrityError:
        raise NameTaken(f"api client {name!r} exists") from None
    return client_from(row)


def adjust_wallet(db: sqlite3.Connection, client_id: int, currency: str, amount: int, kind: str, note: str,
                  order_id: int | None, at: str) -> WalletLine:
    """Move the balance (never below zero: InsufficientBalance) and write the movement's ledger line."""
    row = db.execute(
        "INSERT INTO api_wallets (client_id, currency, balance) VALUES (?,?,?) ON CONFLICT (client_id, currency)"
        " DO UPDATE SET balance = balance + excluded.balance WHERE balance + excluded.balance >= 0"
        " RETURNING balance", (client_id, currency, amount)).fetchone() if amount >= 0 else db.execute(
        "UPDATE api_wallets SET balance = balance + ? WHERE client_id = ? AND currency = ? AND balance + ? >= 0"
        " RETURNING balance", (amount, client_id, currency, amount)).fetchone()
    if row is None:
        raise InsufficientBalance(f"client {client_id} wallet {currency} cannot pay {-amount}")
    line = db.execute(
        f"INSERT INTO api_wallet_ledger (client_id, currency, amount, balance_after, kind, order_id, note, at)"
        f" VALUES (?,?,?,?,?,?,?,?) RETURNING {LINE_COLS}",
        (client_id, currency, amount, row[0], kind, order_id, note, at)).fetchone()
    return line_from(line)


def _adjust_once(db: sqlite3.Connection, client_id: int, currency: str, amount: int, kind: str, note: str,
                 order_id: int | None, at: str) -> WalletLine | None:
    if order_id is not None and db.execute("SELECT 1 FROM api_wallet_ledger WHERE order_id = ? AND kind = ?",
                                           (order_id, kind)).fetchone():
        return None
    return adjust_wallet(db, client_id, currency, amount, kind, note, order_id, at)


def place_api_order(db: sqlite3.Connection, o: ApiOrderIn, now: datetime, g: StateGroups,
                    nonce: OnceKey | None) -> ApiOrderPlaced:
    """Under BEGIN IMMEDIATE (no other writer anywhere): a raise anywhere rolls the whole body back."""
    if nonce is not None and not _claim_once(db, nonce.scope, nonce.key, nonce.expires_at, now):
        raise NonceUsed("nonce claimed before")
    known = db.execute("SELECT order_id, request_hash FROM api_orders WHERE client_id = ? AND client_order_no = ?",
                       (o.client_id, o.client_order_no)).fetchone()
    if known is not None:
        if known[1] != o.request_hash:
            raise DuplicateOrderNo(f"client {o.client_id} order number taken by another request")
        return _placed(db, int(known[0]), False)
    order_id = tx.reserve(db, NewOrder("api", f"client:{o.client_id}", str(o.client_id), o.sku_id, o.quantity,
                                       o.amount, o.currency, o.expires_at, o.language, o.target), now, g)
    at = ts(now)
    adjust_wallet(db, o.client_id, o.currency, -o.amount, "order", o.client_order_no, order_id, at)
    ref = db.execute("SELECT ref FROM orders WHERE id = ?", (order_id,)).fetchone()[0]
    applied = tx.receive_payment(db, PaymentEventIn(WALLET_PROVIDER, f"{o.client_id}:{o.client_order_no}", ref,
                                                    o.amount, o.currency, received_at=now), now, g)
    if applied.outcome != PaymentOutcome.ALLOCATED:
        raise InsufficientStock(f"order {order_id} not allocated: {applied.outcome}")
    db.execute("INSERT INTO api_orders (client_id, client_order_no, order_id, request_hash, callback_url, created_at)"
               " VALUES (?,?,?,?,?,?)", (o.client_id, o.client_order_no, order_id, o.request_hash, o.callback_url, at))
    return _placed(db, order_id, True)


#: concurrent orders of one group commit are placed together first (sqlite_api_bulk), the rest by the body above
BULK_BODIES[place_api_order] = place_many


def _placed(db: sqlite3.Connection, order_id: int, fresh: bool) -> ApiOrderPlaced:
    """The order and its codes as this transaction sees them (no second read after the commit)."""
    order = order_from(db.execute(f"SELECT {ORDER_COLS} FROM orders WHERE id = ?", (order_id,)).fetchone())
    items = tuple(item_from(r) for r in db.execute(f"{ITEMS_SQL} ?{ITEMS_ORDER}", (order_id,)))
    return ApiOrderPlaced(order, items, fresh)


def _idem_row(db: sqlite3.Connection, client_id: int, key: str) -> Any:
    return db.execute("SELECT request_hash, locked_until, status, body_key_id, body_nonce, body_ct"
                      " FROM api_idempotency WHERE client_id = ? AND idem_key = ?", (client_id, key)).fetchone()


def idem_claim_from(row: Any, request_hash: str | None) -> IdemClaim | None:
    """The claim a stored row answers, or None when the caller may take it over (checked by the caller)."""
    if request_hash is not None and row[0] != request_hash:
        return IdemClaim(IdemState.MISMATCH)
    if row[2] is not None:
        return IdemClaim(IdemState.DONE, int(row[2]), Sealed(row[3], bytes(row[4]), bytes(row[5])))
    return None


def claim_idempotency(db: sqlite3.Connection, client_id: int, key: str, request_hash: str, lease_until: datetime,
                      now: datetime) -> IdemClaim:
    fresh = db.execute("INSERT INTO api_idempotency (client_id, idem_key, request_hash, locked_until, created_at)"
                       " VALUES (?,?,?,?,?) ON CONFLICT DO NOTHING",
                       (client_id, key, request_hash, ts(lease_until), ts(now))).rowcount
    if fresh:
        return IdemClaim(IdemState.NEW)
    row = _idem_row(db, client_id, key)
    answered = idem_claim_from(row, request_hash)
    if answered is not None:
        return answered
    if row[1] > ts(now):
        return IdemClaim(IdemState.PENDING)
    db.execute("UPDATE api_idempotency SET locked_until = ? WHERE client_id = ? AND idem_key = ?",
               (ts(lease_until), client_id, key))
    return IdemClaim(IdemState.NEW)


def finish_idempotency(db: sqlite3.Connection, client_id: int, key: str, status: int, body: Sealed) -> IdemClaim:
    db.execute("UPDATE api_idempotency SET status = ?, body_key_id = ?, body_nonce = ?, body_ct = ?"
               " WHERE client_id = ? AND idem_key = ? AND status IS NULL",
               (status, body.key_id, body.nonce, body.ciphertext, client_id, key))
    claim = idem_claim_from(_idem_row(db, client_id, key), None)
    assert claim is not None
    return claim


class ApiVerbs(SqliteBase):
    """Order-API verbs of SqliteStore (mixed in)."""

    async def create_api_client(self, key_id: str, name: str, scopes: tuple[str, ...], secret: Sealed,
                                now: datetime) -> ApiClient:
        return await self._tx(_create_client, key_id, name, scopes, secret, now)

    async def api_client(self, key_id: str) -> ApiClient | None:
        r = await self._one(f"SELECT {CLIENT_COLS} FROM api_clients WHERE key_id = ?", (key_id,))
        return client_from(r) if r else None

    async def api_clients(self) -> list[ApiClient]:
        return [client_from(r) for r in await self._all(f"SELECT {CLIENT_COLS} FROM api_clients ORDER BY id")]

    async def revoke_api_client(self, key_id: str, now: datetime) -> bool:
        return bool(await self._tx(lambda db: db.execute(
            "UPDATE api_clients SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
            (ts(now), key_id)).rowcount))

    async def set_api_price(self, client_id: int, sku_id: int, price: tuple[str, int] | None) -> None:
        if price is None:
            await self._tx(lambda db: db.execute("DELETE FROM api_prices WHERE client_id = ? AND sku_id = ?",
                                                 (client_id, sku_id)))
            return
        await self._tx(lambda db: db.execute(
            "INSERT INTO api_prices (client_id, sku_id, currency, amount) VALUES (?,?,?,?) ON CONFLICT"
            " (client_id, sku_id) DO UPDATE SET currency = excluded.currency, amount = excluded.amount",
            (client_id, sku_id, price[0], price[1])))

    async def api_prices(self, client_id: int) -> dict[int, tuple[str, int]]:
        rows = await self._all("SELECT sku_id, currency, amount FROM api_prices WHERE client_id = ?", (client_id,))
        return {int(r[0]): (r[1], int(r[2])) for r in rows}

    async def adjust_wallet(self, client_id: int, currency: str, amount: int, kind: str, note: str,
                            now: datetime, order_id: int | None = None) -> WalletLine | None:
        return await self._tx(_adjust_once, client_id, currency, amount, kind, note, order_id, ts(now))

    async def wallet_balances(self, client_id: int) -> dict[str, int]:
        rows = await self._all("SELECT currency, balance FROM api_wallets WHERE client_id = ? ORDER BY currency",
                               (client_id,))
        return {r[0]: int(r[1]) for r in rows}

    async def wallet_lines(self, client_id: int, limit: int) -> list[WalletLine]:
        rows = await self._all(f"SELECT {LINE_COLS} FROM api_wallet_ledger WHERE client_id = ?"
                               " ORDER BY id DESC LIMIT ?", (client_id, limit))
        return [line_from(r) for r in rows]

    async def place_api_order(self, order: ApiOrderIn, now: datetime, nonce: OnceKey | None = None
                              ) -> ApiOrderPlaced:
        return await self._tx(place_api_order, order, now, self._states, nonce)

    async def api_order(self, client_id: int, client_order_no: str) -> ApiOrderLink | None:
        r = await self._one(f"SELECT {LINK_COLS} FROM api_orders WHERE client_id = ? AND client_order_no = ?",
                            (client_id, client_order_no))
        return link_from(r) if r else None

    async def api_order_of(self, order_id: int) -> ApiOrderLink | None:
        r = await self._one(f"SELECT {LINK_COLS} FROM api_orders WHERE order_id = ?", (order_id,))
        return link_from(r) if r else None

    async def claim_idempotency(self, client_id: int, key: str, request_hash: str, lease_until: datetime,
                                now: datetime) -> IdemClaim:
        return await self._tx(claim_idempotency, client_id, key, request_hash, lease_until, now)

    async def finish_idempotency(self, client_id: int, key: str, status: int, body: Sealed) -> IdemClaim:
        return await self._tx(finish_idempotency, client_id, key, status, body)

    async def release_idempotency(self, client_id: int, key: str) -> None:
        await self._tx(lambda db: db.execute("DELETE FROM api_idempotency WHERE client_id = ? AND idem_key = ?"
                                             " AND status IS NULL", (client_id, key)))
