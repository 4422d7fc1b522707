"""PostgreSQL order-API verbs (a mixin of PostgresStore, mirroring storage/sqlite_api.py): the wallet-paid order is
one call of kb_api_order (migrations/postgres/0009_order_api.sql), i.e. one transaction and one round trip;
concurrent orders of this process go out together as one kb_api_order_batch call (storage/postgres_api_batch.py)."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from storage.errors import InsufficientStock, PurchaseLimitReached, UnknownRecord
from storage.postgres_api_batch import ApiOrderBatcher
from storage.postgres_base import ORDER_COLS, PostgresBase, _retrying, aware, order_from
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
from storage.records import OnceKey
from storage.sqlite_api import (
    CLIENT_COLS,
    LINE_COLS,
    LINK_COLS,
    client_from,
    idem_claim_from,
    line_from,
    link_from,
)
from storage.sqlite_api_bulk import item_from
from storage.sqlite_orders import new_ref

_ERRORS: dict[str, type[Exception]] = {"KB001": UnknownRecord, "KB002": PurchaseLimitReached,
                                       "KB003": InsufficientStock, "KB004": InsufficientBalance,
                                       "KB005": DuplicateOrderNo, "KB006": NonceUsed}
#: kb_api_order_rows' answer: the order's columns, the fresh flag, then each live item with its code
_PLACED_COLS = (", ".join(f"(r.out_o).{c.strip()}" for c in ORDER_COLS.split(",")) + ", r.out_fresh, (r.out_i).item_no,"
                " (r.out_c).id, (r.out_c).digest, (r.out_c).key_id, (r.out_c).nonce, (r.out_c).ciphertext,"
                " (r.out_i).use_no")
_PLACED_ORDER_N = len(ORDER_COLS.split(","))
_IDEM_COLS = "request_hash, locked_until, status, body_key_id, body_nonce, body_ct"


class PgApiVerbs(PostgresBase):
    """Order-API verbs of PostgresStore (mixed in)."""

    _api_batcher: ApiOrderBatcher | None = None

    async def create_api_client(self, key_id: str, name: str, scopes: tuple[str, ...], secret: Sealed,
                                now: datetime) -> ApiClient:
        try:
            r = await self.pool.fetchrow(
                f"INSERT INTO api_clients (key_id, name, scopes, secret_key_id, secret_nonce, secret_ct, created_at)"
                f" VALUES ($1,$2,$3,$4,$5,$6,$7) RETURNING {CLIENT_COLS}", key_id, name, ",".join(scopes),
                secret.key_id, secret.nonce, secret.ciphertext, aware(now))
        except asyncpg.UniqueViolationError:
            raise NameTaken(f"api client {name!r} exists") from None
        return client_from(r)

    async def api_client(self, key_id: str) -> ApiClient | None:
        r = await self.pool.fetchrow(f"SELECT {CLIENT_COLS} FROM api_clients WHERE key_id = $1", key_id)
        return client_from(r) if r else None

    async def api_clients(self) -> list[ApiClient]:
        return [client_from(r) for r in await self.pool.fetch(f"SELECT {CLIENT_COLS} FROM api_clients ORDER BY id")]

    async def revoke_api_client(self, key_id: str, now: datetime) -> bool:
        status = await self.pool.execute("UPDATE api_clients SET revoked_at = $1 WHERE key_id = $2"
                                         " AND revoked_at IS NULL", aware(now), key_id)
        return status.split()[-1] == "1"

    async def set_api_price(self, client_id: int, sku_id: int, price: tuple[str, int] | None) -> None:
        if price is None:
            await self.pool.execute("DELETE FROM api_prices WHERE client_id = $1 AND sku_id = $2", client_id, sku_id)
            return
        await self.pool.execute(
            "INSERT INTO api_prices (client_id, sku_id, currency, amount) VALUES ($1,$2,$3,$4) ON CONFLICT"
            " (client_id, sku_id) DO UPDATE SET currency = excluded.currency, amount = excluded.amount",
            client_id, sku_id, price[0], price[1])

    async def api_prices(self, client_id: int) -> dict[int, tuple[str, int]]:
        rows = await self.pool.fetch("SELECT sku_id, currency, amount FROM api_prices WHERE client_id = $1",
                                     client_id)
        return {int(r[0]): (r[1], int(r[2])) for r in rows}

    async def adjust_wallet(self, client_id: int, currency: str, amount: int, kind: str, note: str,
                            now: datetime, order_id: int | None = None) -> WalletLine | None:
        async with self.pool.acquire() as conn, conn.transaction():
            if order_id is not None:
                # one line per (order, kind): concurrent callers queue on the order row
                await conn.execute("SELECT 1 FROM orders WHERE id = $1 FOR UPDATE", order_id)
                if await conn.fetchval("SELECT 1 FROM api_wallet_ledger WHERE order_id = $1 AND kind = $2",
                                       order_id, kind):
                    return None
            if amount >= 0:
                balance = await conn.fetchval(
                    "INSERT INTO api_wallets (client_id, currency, balance) VALUES ($1,$2,$3)"
                    " ON CONFLICT (client_id, currency) DO UPDATE SET balance = api_wallets.balance + excluded.balance"
                    " RETURNING balance", client_id, currency, amount)
            else:
                balance = await conn.fetchval(
                    "UPDATE api_wallets SET balance = balance + $1 WHERE client_id = $2 AND currency = $3"
                    " AND balance + $1 >= 0 RETURNING balance", amount, client_id, currency)
            if balance is None:
                raise InsufficientBalance(f"client {client_id} wallet {currency} cannot pay {-amount}")
            r = await conn.fetchrow(
                f"INSERT INTO api_wallet_ledger (client_id, currency, amount, balance_after, kind, note, at, order_id)"
                f" VALUES ($1,$2,$3,$4,$5,$6,$7,$8) RETURNING {LINE_COLS}", client_id, currency, amount, balance,
                kind, note, aware(now), order_id)
        return line_from(r)

    async def wallet_balances(self, client_id: int) -> dict[str, int]:
        rows = await self.pool.fetch("SELECT currency, balance FROM api_wallets WHERE client_id = $1"
                                     ' ORDER BY currency COLLATE "C"', client_id)
        return {r[0]: int(r[1]) for r in rows}

    async def wallet_lines(self, client_id: int, limit: int) -> list[WalletLine]:
        rows = await self.pool.fetch(f"SELECT {LINE_COLS} FROM api_wallet_ledger WHERE client_id = $1"
                                     " ORDER BY id DESC LIMIT $2", client_id, limit)
        return [line_from(r) for r in rows]

    async def place_api_order(self, order: ApiOrderIn, now: datetime, nonce: OnceKey | None = None
                              ) -> ApiOrderPlaced:
        """Concurrent calls of this process go out together as one kb_api_order_batch call (ApiOrderBatcher)."""
        if self._api_batcher is None:
            self._api_batcher = ApiOrderBatcher(self.kept_connections(), _PLACED_COLS, _PLACED_ORDER_N, self._closed,
                                                self._payable, self.place_api_order_one)
        return await self._api_batcher.submit(order, now, nonce)

    async def place_api_order_one(self, order: ApiOrderIn, now: datetime, nonce: OnceKey | None = None
                                  ) -> ApiOrderPlaced:
        """One order in its own call of kb_api_order_rows."""
        async def once() -> ApiOrderPlaced:
            async with self.pool.acquire() as conn:
                try:
                    # one round trip: the order placed (0016 kb_api_order_rows calls kb_api_order) and read back
                    # with its live items and codes, order row first, by item number
                    rows = await conn.fetch(
                        f"SELECT {_PLACED_COLS} FROM kb_api_order_rows($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,"
                        "$14,$15,$16,$17,$18) r",
                        order.client_id, order.client_order_no, order.request_hash, order.callback_url, new_ref(),
                        order.sku_id, order.quantity, order.amount, order.currency, order.language,
                        aware(order.expires_at), aware(now), self._closed, self._payable,
                        nonce.scope if nonce else None, nonce.key if nonce else None,
                        aware(nonce.expires_at) if nonce else None, order.target)
                except asyncpg.PostgresError as exc:
                    error = _ERRORS.get(getattr(exc, "sqlstate", "") or "")
                    if error is not None:
                        raise error(str(getattr(exc, "message", "") or exc)) from None
                    raise
            assert rows
            n = _PLACED_ORDER_N  # the order's columns come first, then the fresh flag
            items = tuple(item_from(row[n + 1:]) for row in rows if row[n + 1] is not None)
            return ApiOrderPlaced(order_from(rows[0]), items, bool(rows[0][n]))

        return await _retrying(once)

    async def api_order(self, client_id: int, client_order_no: str) -> ApiOrderLink | None:
        r = await self.pool.fetchrow(f"SELECT {LINK_COLS} FROM api_orders WHERE client_id = $1"
                                     " AND client_order_no = $2", client_id, client_order_no)
        return link_from(r) if r else None

    async def api_order_of(self, order_id: int) -> ApiOrderLink | None:
        r = await self.pool.fetchrow(f"SELECT {LINK_COLS} FROM api_orders WHERE order_id = $1", order_id)
        return link_from(r) if r else None

    async def claim_idempotency(self, client_id: int, key: str, request_hash: str, lease_until: datetime,
                                now: datetime) -> IdemClaim:
        async with self.pool.acquire() as conn, conn.transaction():
            fresh = await conn.fetchval(
                "INSERT INTO api_idempotency (client_id, idem_key, request_hash, locked_until, created_at)"
                " VALUES ($1,$2,$3,$4,$5) ON CONFLICT DO NOTHING RETURNING 1", client_id, key, request_hash,
                aware(lease_until), aware(now))
            if fresh:
                return IdemClaim(IdemState.NEW)
            row = await conn.fetchrow(f"SELECT {_IDEM_COLS} FROM api_idempotency WHERE client_id = $1"
                                      " AND idem_key = $2 FOR UPDATE", client_id, key)
            if row is None:  # released between the insert and the read: the caller asks again
                return IdemClaim(IdemState.PENDING)
            answered = idem_claim_from(row, request_hash)
            if answered is not None:
                return answered
            if row[1] > aware(now):
                return IdemClaim(IdemState.PENDING)
            await conn.execute("UPDATE api_idempotency SET locked_until = $1 WHERE client_id = $2 AND idem_key = $3",
                               aware(lease_until), client_id, key)
            return IdemClaim(IdemState.NEW)

    async def finish_idempotency(self, client_id: int, key: str, status: int, body: Sealed) -> IdemClaim:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("UPDATE api_idempotency SET status = $1, body_key_id = $2, body_nonce = $3,"
                               " body_ct = $4 WHERE client_id = $5 AND idem_key = $6 AND status IS NULL",
                               status, body.key_id, body.nonce, body.ciphertext, client_id, key)
            row = await conn.fetchrow(f"SELECT {_IDEM_COLS} FROM api_idempotency WHERE client_id = $1"
                                      " AND idem_key = $2", client_id, key)
        claim = idem_claim_from(row, None)
        assert claim is not None
        return claim

    async def release_idempotency(self, client_id: int, key: str) -> None:
        await self.pool.execute("DELETE FROM api_idempotency WHERE client_id = $1 AND idem_key = $2"
                                " AND status IS NULL", client_id, key)
