"""SQLite distributor verbs (a mixin of SqliteStore): distributors, price lists, commission rates and the commission
ledger (accrual and reversal passes, each one transaction body in one hop; payouts checked against the payable
balance in the same body)."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection
from datetime import datetime
from typing import Any

from storage.protocols.api import WalletLine
from storage.protocols.distributors import (
    CommissionKind,
    CommissionLine,
    Distributor,
    DistributorPrice,
    DistributorTaken,
    PartRefund,
    PayableExceeded,
)
from storage.sqlite_api import LINE_COLS, line_from
from storage.sqlite_base import SqliteBase
from storage.sqlite_commission import book, catch_up, refund_part
from storage.sqltime import from_ts, ts

DIST_COLS = "id, name, ref_code, api_client_id, discount_bp, commission_bp, created_at"
#: a ledger line with its order (l. and o. columns; the order columns are empty for payouts)
LEDGER_COLS = ("l.id, l.distributor_id, l.currency, l.amount, l.kind, l.order_id, l.note, l.at,"
               " COALESCE(o.ref, ''), o.sku_id, COALESCE(o.amount, 0)")


def _time(value: Any) -> datetime:
    return value if isinstance(value, datetime) else from_ts(value)


def distributor_from(r: Any) -> Distributor:
    return Distributor(int(r[0]), r[1], r[2], None if r[3] is None else int(r[3]), int(r[4]), int(r[5]),
                       _time(r[6]))


def commission_from(r: Any) -> CommissionLine:
    return CommissionLine(int(r[0]), int(r[1]), r[2], int(r[3]), CommissionKind(r[4]),
                          None if r[5] is None else int(r[5]), r[6], _time(r[7]), r[8],
                          None if r[9] is None else int(r[9]), int(r[10]))


def _marks(values: Collection[str]) -> str:
    return ",".join("?" * len(values))


def _accrue(db: sqlite3.Connection, delivered: Collection[str], except_channels: Collection[str], at: str,
            limit: int, order_id: int | None) -> int:
    one = " AND o.id = ?" if order_id is not None else ""
    params: list[Any] = [at, *delivered, *except_channels]
    params += [order_id] if order_id is not None else []
    # the rate of the SKU if it has one, else the distributor's; integer commission, rounded down
    rows = db.execute(
        "INSERT OR IGNORE INTO distributor_ledger (distributor_id, currency, amount, kind, order_id, note, at)"
        " SELECT d.id, o.currency, o.amount * COALESCE(r.bp, d.commission_bp) / 10000, 'accrual', o.id, o.ref, ?"
        " FROM distributors d JOIN users u ON u.referrer = d.ref_code"
        " JOIN orders o ON o.channel = u.channel AND o.user_id = u.user_id"
        " LEFT JOIN distributor_commission_rates r ON r.distributor_id = d.id AND r.sku_id = o.sku_id"
        f" WHERE o.state IN ({_marks(delivered)}) AND o.channel NOT IN ({_marks(except_channels)}){one}"
        " AND o.created_at >= d.created_at"
        " AND NOT EXISTS (SELECT 1 FROM distributor_ledger x WHERE x.order_id = o.id AND x.kind = 'accrual')"
        " ORDER BY o.id LIMIT ? RETURNING order_id, currency, amount", (*params, limit)).fetchall()
    book(db, rows, at)
    catch_up(db, rows, at)
    return len(rows)


def _reverse(db: sqlite3.Connection, refunded: Collection[str], at: str, limit: int) -> int:
    """The final reversal of each refunded order that lacks one (its refund writes it in the same transaction;
    this catches up on anything else): what the partial reversals left of the accrual."""
    rows = db.execute(
        "INSERT OR IGNORE INTO distributor_ledger (distributor_id, currency, amount, kind, order_id, note, at, part)"
        " SELECT l.distributor_id, l.currency, -(l.amount + COALESCE((SELECT SUM(y.amount) FROM distributor_ledger y"
        " WHERE y.order_id = l.order_id AND y.kind = 'reversal'), 0)), 'reversal', l.order_id, l.note, ?, ''"
        " FROM distributor_ledger l JOIN orders o ON o.id = l.order_id"
        f" WHERE l.kind = 'accrual' AND l.amount <> 0 AND o.state IN ({_marks(refunded)})"
        " AND NOT EXISTS (SELECT 1 FROM distributor_ledger x WHERE x.order_id = l.order_id AND x.kind = 'reversal'"
        " AND x.part = '') ORDER BY l.id LIMIT ? RETURNING order_id, currency, amount", (at, *refunded, limit)
    ).fetchall()
    book(db, rows, at)
    return len(rows)


def _payout(db: sqlite3.Connection, distributor_id: int, currency: str, amount: int, note: str,
            at: str) -> CommissionLine:
    """Under BEGIN IMMEDIATE (the only writer): the balance read here is the one the line is written against."""
    payable = db.execute("SELECT COALESCE(SUM(amount), 0) FROM distributor_ledger WHERE distributor_id = ?"
                         " AND currency = ?", (distributor_id, currency)).fetchone()[0]
    if amount > int(payable):
        raise PayableExceeded(f"distributor {distributor_id} payable {currency} {payable} < {amount}", int(payable))
    row = db.execute(
        "INSERT INTO distributor_ledger (distributor_id, currency, amount, kind, order_id, note, at)"
        " VALUES (?,?,?,'payout',NULL,?,?) RETURNING id", (distributor_id, currency, -amount, note, at)).fetchone()
    return CommissionLine(int(row[0]), distributor_id, currency, -amount, CommissionKind.PAYOUT, None, note,
                          from_ts(at))


def _create(db: sqlite3.Connection, name: str, ref_code: str, api_client_id: int | None, at: str) -> Distributor:
    try:
        row = db.execute(f"INSERT INTO distributors (name, ref_code, api_client_id, created_at) VALUES (?,?,?,?)"
                         f" RETURNING {DIST_COLS}", (name, ref_code, api_client_id, at)).fetchone()
    except sqlite3.IntegrityError:
        raise DistributorTaken(f"distributor {name!r} or its code or client is taken") from None
    return distributor_from(row)


def _update(db: sqlite3.Connection, distributor_id: int, changes: dict[str, int]) -> Distributor:
    try:
        for column, value in changes.items():  # column names come from the verb's own keywords, never from input
            db.execute(f"UPDATE distributors SET {column} = ? WHERE id = ?", (value, distributor_id))
    except sqlite3.IntegrityError:
        raise DistributorTaken(f"api client {changes.get('api_client_id')} belongs to another distributor") from None
    return distributor_from(db.execute(f"SELECT {DIST_COLS} FROM distributors WHERE id = ?",
                                       (distributor_id,)).fetchone())


class Distributors(SqliteBase):
    """Distributor verbs of SqliteStore (mixed in)."""

    async def create_distributor(self, name: str, ref_code: str, api_client_id: int | None,
                                 now: datetime) -> Distributor:
        return await self._tx(_create, name, ref_code, api_client_id, ts(now))

    async def distributor(self, name: str) -> Distributor | None:
        r = await self._one(f"SELECT {DIST_COLS} FROM distributors WHERE name = ?", (name,))
        return distributor_from(r) if r else None

    async def distributor_of_client(self, api_client_id: int) -> Distributor | None:
        r = await self._one(f"SELECT {DIST_COLS} FROM distributors WHERE api_client_id = ?", (api_client_id,))
        return distributor_from(r) if r else None

    async def distributors(self) -> list[Distributor]:
        return [distributor_from(r) for r in await self._all(f"SELECT {DIST_COLS} FROM distributors ORDER BY name")]

    async def update_distributor(self, distributor_id: int, *, discount_bp: int | None = None,
                                 commission_bp: int | None = None, api_client_id: int | None = None
                                 ) -> Distributor:
        changes = {k: v for k, v in (("discount_bp", discount_bp), ("commission_bp", commission_bp),
                                     ("api_client_id", api_client_id)) if v is not None}
        return await self._tx(_update, distributor_id, changes)

    async def set_distributor_price(self, distributor_id: int, sku_id: int, price: DistributorPrice | None) -> None:
        if price is None:
            await self._tx(lambda db: db.execute(
                "DELETE FROM distributor_prices WHERE distributor_id = ? AND sku_id = ?", (distributor_id, sku_id)))
            return
        await self._tx(lambda db: db.execute(
            "INSERT INTO distributor_prices (distributor_id, sku_id, currency, amount, below_cost) VALUES (?,?,?,?,?)"
            " ON CONFLICT (distributor_id, sku_id) DO UPDATE SET currency = excluded.currency,"
            " amount = excluded.amount, below_cost = excluded.below_cost",
            (distributor_id, sku_id, price.currency, price.amount, int(price.below_cost))))

    async def distributor_prices(self, distributor_id: int) -> dict[int, DistributorPrice]:
        rows = await self._all("SELECT sku_id, currency, amount, below_cost FROM distributor_prices"
                               " WHERE distributor_id = ?", (distributor_id,))
        return {int(r[0]): DistributorPrice(int(r[0]), r[1], int(r[2]), bool(r[3])) for r in rows}

    async def set_commission_rate(self, distributor_id: int, sku_id: int, bp: int | None) -> None:
        if bp is None:
            await self._tx(lambda db: db.execute(
                "DELETE FROM distributor_commission_rates WHERE distributor_id = ? AND sku_id = ?",
                (distributor_id, sku_id)))
            return
        await self._tx(lambda db: db.execute(
            "INSERT INTO distributor_commission_rates (distributor_id, sku_id, bp) VALUES (?,?,?)"
            " ON CONFLICT (distributor_id, sku_id) DO UPDATE SET bp = excluded.bp", (distributor_id, sku_id, bp)))

    async def commission_rates(self, distributor_id: int) -> dict[int, int]:
        rows = await self._all("SELECT sku_id, bp FROM distributor_commission_rates WHERE distributor_id = ?",
                               (distributor_id,))
        return {int(r[0]): int(r[1]) for r in rows}

    async def pool_last_cost(self, pool_id: int) -> tuple[int, str] | None:
        r = await self._one("SELECT unit_cost, currency FROM code_batches WHERE pool_id = ? ORDER BY id DESC LIMIT 1",
                            (pool_id,))
        return (int(r[0]), r[1]) if r else None

    async def accrue_commissions(self, delivered: Collection[str], except_channels: Collection[str], now: datetime,
                                 limit: int, order_id: int | None = None) -> int:
        return await self._tx(_accrue, tuple(delivered), tuple(except_channels), ts(now), limit, order_id)

    async def reverse_commissions(self, refunded: Collection[str], now: datetime, limit: int) -> int:
        return await self._tx(_reverse, tuple(refunded), ts(now), limit)

    async def refund_part(self, order_id: int, refund_ref: str, amount: int, now: datetime) -> PartRefund:
        refundable = tuple(s.value for s in self._states.refundable)
        return await self._tx(refund_part, order_id, refund_ref, amount, ts(now), refundable)

    async def refunded_parts(self, order_id: int) -> int:
        r = await self._one("SELECT COALESCE(SUM(amount), 0) FROM refund_parts WHERE order_id = ?", (order_id,))
        return int(r[0]) if r else 0

    async def record_payout(self, distributor_id: int, currency: str, amount: int, note: str,
                            now: datetime) -> CommissionLine:
        return await self._tx(_payout, distributor_id, currency, amount, note, ts(now))

    async def commission_balances(self, distributor_id: int, before: datetime | None = None) -> dict[str, int]:
        until = " AND at < ?" if before is not None else ""
        params: tuple[Any, ...] = (distributor_id, ts(before)) if before is not None else (distributor_id,)
        rows = await self._all(f"SELECT currency, SUM(amount) FROM distributor_ledger WHERE distributor_id = ?{until}"
                               " GROUP BY currency ORDER BY currency", params)
        return {r[0]: int(r[1]) for r in rows}

    async def commission_lines(self, distributor_id: int, start: datetime, end: datetime) -> list[CommissionLine]:
        rows = await self._scan(
            f"SELECT {LEDGER_COLS} FROM distributor_ledger l LEFT JOIN orders o ON o.id = l.order_id"
            " WHERE l.distributor_id = ? AND l.at >= ? AND l.at < ? ORDER BY l.at, l.id",
            (distributor_id, ts(start), ts(end)))
        return [commission_from(r) for r in rows]

    async def wallet_lines_between(self, api_client_id: int, start: datetime, end: datetime) -> list[WalletLine]:
        rows = await self._scan(f"SELECT {LINE_COLS} FROM api_wallet_ledger WHERE client_id = ? AND at >= ?"
                                " AND at < ? ORDER BY id", (api_client_id, ts(start), ts(end)))
        return [line_from(r) for r in rows]
