"""SQLite supply verbs (suppliers, procurements, SKU sources): a mixin of SqliteStore, mirrored by
storage/postgres_supply.py. Each writing verb is one transaction body run whole in the connection's thread
(`_tx`), so its reads and conditional writes cannot interleave with another writer's."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from storage.records import NewCode
from storage.records_supply import (
    CostChange,
    NewProcurement,
    Procurement,
    ProcurementState,
    SealedSecret,
    Settlement,
    SkuSource,
    SkuSourcing,
    SupplierProductRow,
    SupplierRecord,
)
from storage.sqlite_orders import fail_backorder, fill_backorder, requeue_procure
from storage.sqlite_vault import insert_codes
from storage.sqltime import from_ts, ts

SUPPLIER_COLS = ("id, name, protocol, base_url, account, secret_key_id, secret_nonce, secret, notify_url,"
                 " product_ids, connect_timeout_ms, read_timeout_ms, breaker_failures, breaker_cool_down_s,"
                 " low_balance, currency, active")
PROC_COLS = ("id, our_ref, supplier, product_id, quantity, max_unit_cost, currency, pool_id, order_id, state,"
             " supplier_order_id, cost, batch_id, received, duplicates, shortfall, held, detail, created_at,"
             " updated_at")
_OPEN = ("planned", "sent", "unknown")


def supplier_record(r: Any) -> SupplierRecord:
    return SupplierRecord(
        name=r[1], protocol=r[2], base_url=r[3], account=r[4], secret=SealedSecret(r[5], bytes(r[6]), bytes(r[7])),
        notify_url=r[8], product_ids=tuple(p for p in str(r[9]).split(",") if p), connect_timeout_ms=int(r[10]),
        read_timeout_ms=int(r[11]), breaker_failures=int(r[12]), breaker_cool_down_s=int(r[13]),
        low_balance=int(r[14]), currency=r[15], active=bool(r[16]), id=int(r[0]))


def supplier_params(s: SupplierRecord) -> tuple[Any, ...]:
    return (s.name, s.protocol, s.base_url, s.account, s.secret.key_id, s.secret.nonce, s.secret.ciphertext,
            s.notify_url, ",".join(s.product_ids), s.connect_timeout_ms, s.read_timeout_ms, s.breaker_failures,
            s.breaker_cool_down_s, s.low_balance, s.currency, s.active)


def procurement(r: Any, when: Callable[[Any], datetime] = from_ts) -> Procurement:
    return Procurement(int(r[0]), r[1], r[2], r[3], int(r[4]), int(r[5]), r[6], int(r[7]),
                       None if r[8] is None else int(r[8]), ProcurementState(r[9]), r[10],
                       None if r[11] is None else int(r[11]), None if r[12] is None else int(r[12]), int(r[13]),
                       int(r[14]), int(r[15]), bool(r[16]), r[17], when(r[18]), when(r[19]))


def encode_sources(sources: Sequence[SkuSource]) -> str:
    return "\n".join(f"{s.supplier}:{s.product_id}" for s in sources)


def decode_sources(text: str) -> tuple[SkuSource, ...]:
    out = []
    for line in text.splitlines():
        supplier, _, product = line.partition(":")
        if supplier and product:
            out.append(SkuSource(supplier, product))
    return tuple(out)


SOURCING_COLS = "sku_id, own, sources, max_unit_cost, restock_quantity, on_demand, margin_floor, markup_bp, price_unit"
PRODUCT_COLS = "supplier, product_id, name, cost, currency, stock, stock_count"


def sourcing(r: Any) -> SkuSourcing:
    return SkuSourcing(int(r[0]), bool(r[1]), decode_sources(r[2]), int(r[3]), int(r[4]), bool(r[5]), int(r[6]),
                       int(r[7]), int(r[8]))


def sourcing_params(s: SkuSourcing) -> tuple[Any, ...]:
    return (s.sku_id, s.own, encode_sources(s.sources), s.max_unit_cost, s.restock_quantity, s.on_demand,
            s.margin_floor, s.markup_bp, s.price_unit)


def product_row(r: Any) -> SupplierProductRow:
    return SupplierProductRow(r[0], r[1], r[2], int(r[3]), r[4], r[5], None if r[6] is None else int(r[6]))


def settles(current: ProcurementState, outcome: ProcurementState) -> bool:
    """May `outcome` settle a procurement in `current`? Sent or unknown ones take any outcome; a planned one
    (nothing sent) only FAILED."""
    if current in (ProcurementState.SENT, ProcurementState.UNKNOWN):
        return True
    return current is ProcurementState.PLANNED and outcome is ProcurementState.FAILED


def _save_supplier(db: sqlite3.Connection, s: SupplierRecord, now: datetime) -> SupplierRecord:
    at = ts(now)
    row = db.execute(
        "INSERT INTO suppliers (name, protocol, base_url, account, secret_key_id, secret_nonce, secret, notify_url,"
        " product_ids, connect_timeout_ms, read_timeout_ms, breaker_failures, breaker_cool_down_s, low_balance,"
        " currency, active, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
        " ON CONFLICT (name) DO UPDATE SET protocol = excluded.protocol, base_url = excluded.base_url,"
        " account = excluded.account, secret_key_id = excluded.secret_key_id, secret_nonce = excluded.secret_nonce,"
        " secret = excluded.secret, notify_url = excluded.notify_url, product_ids = excluded.product_ids,"
        " connect_timeout_ms = excluded.connect_timeout_ms, read_timeout_ms = excluded.read_timeout_ms,"
        " breaker_failures = excluded.breaker_failures, breaker_cool_down_s = excluded.breaker_cool_down_s,"
        " low_balance = excluded.low_balance, currency = excluded.currency, active = excluded.active,"
        f" updated_at = excluded.updated_at RETURNING {SUPPLIER_COLS}", (*supplier_params(s), at, at)).fetchone()
    return supplier_record(row)


def _plan(db: sqlite3.Connection, p: NewProcurement, now: datetime) -> Procurement | None:
    at = ts(now)
    try:
        row = db.execute(
            "INSERT INTO procurements (our_ref, supplier, product_id, quantity, max_unit_cost, currency, pool_id,"
            " order_id, state, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,'planned',?,?)"
            f" RETURNING {PROC_COLS}", (p.our_ref, p.supplier, p.product_id, p.quantity, p.max_unit_cost,
                                        p.currency, p.pool_id, p.order_id, at, at)).fetchone()
    except sqlite3.IntegrityError as exc:
        if "UNIQUE" not in str(exc):
            raise
        return None  # a live procurement of this order or an open restock of this pool: nothing written
    return procurement(row)


def _move(db: sqlite3.Connection, our_ref: str, frm: Sequence[str], to: str, detail: str | None,
          now: datetime) -> bool:
    marks = ",".join("?" * len(frm))
    cur = db.execute("UPDATE procurements SET state = ?,"
                     " detail = CASE WHEN held = 1 THEN detail ELSE COALESCE(?, detail) END, updated_at = ?"
                     f" WHERE our_ref = ? AND state IN ({marks})", (to, detail, ts(now), our_ref, *frm))
    return cur.rowcount == 1


def _settle(db: sqlite3.Connection, our_ref: str, o: Settlement, codes: Sequence[NewCode],
            now: datetime) -> Procurement | None:
    at = ts(now)
    row = db.execute(f"SELECT {PROC_COLS} FROM procurements WHERE our_ref = ?", (our_ref,)).fetchone()
    if row is None:
        return None
    p = procurement(row)
    if not settles(p.state, o.state):
        return None
    if o.state is ProcurementState.UNKNOWN:
        db.execute("UPDATE procurements SET state = 'unknown', supplier_order_id = COALESCE(?, supplier_order_id),"
                   " detail = ?, updated_at = ? WHERE id = ?", (o.supplier_order_id, o.detail[:200], at, p.id))
    elif o.state is ProcurementState.FAILED:
        db.execute("UPDATE procurements SET state = 'failed', supplier_order_id = COALESCE(?, supplier_order_id),"
                   " detail = ?, updated_at = ? WHERE id = ?", (o.supplier_order_id, o.detail[:200], at, p.id))
    else:
        batch_id: int | None = None
        received = duplicates = 0
        if codes:
            unit = (o.cost or 0) // p.quantity
            batch_id = int(db.execute(
                "INSERT INTO code_batches (pool_id, supplier, unit_cost, currency, source, created_at)"
                " VALUES (?,?,?,?,?,?) RETURNING id",
                (p.pool_id, p.supplier, unit, p.currency, f"procurement {p.our_ref}", at)).fetchone()[0])
            result = insert_codes(db, batch_id, p.pool_id, codes)
            received, duplicates = result.inserted, result.duplicate_in_vault + result.duplicate_in_batch
            db.execute("UPDATE code_batches SET imported = ?, duplicate_in_vault = ?, duplicate_in_batch = ?"
                       " WHERE id = ?", (received, result.duplicate_in_vault, result.duplicate_in_batch, batch_id))
        db.execute("UPDATE procurements SET state = 'succeeded', supplier_order_id = COALESCE(?, supplier_order_id),"
                   " cost = ?, batch_id = ?, received = ?, duplicates = ?, shortfall = ?, detail = ?, updated_at = ?"
                   " WHERE id = ?", (o.supplier_order_id, o.cost, batch_id, received, duplicates,
                                     max(p.quantity - received, 0), o.detail[:200], at, p.id))
        if p.order_id is not None:  # on demand after payment: the codes are that order's, in this transaction
            fill_backorder(db, p.order_id, batch_id, o.cost, p.currency, p.our_ref, at)
    if o.state is ProcurementState.FAILED and p.order_id is not None:
        requeue_procure(db, p.order_id, at)  # fail over to the next source, or fail the order
    return procurement(db.execute(f"SELECT {PROC_COLS} FROM procurements WHERE id = ?", (p.id,)).fetchone())


SAVE_SOURCING = (
    f"INSERT INTO sku_sourcing ({SOURCING_COLS}) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT (sku_id) DO UPDATE SET"
    " own = excluded.own, sources = excluded.sources, max_unit_cost = excluded.max_unit_cost,"
    " restock_quantity = excluded.restock_quantity, on_demand = excluded.on_demand,"
    " margin_floor = excluded.margin_floor, markup_bp = excluded.markup_bp, price_unit = excluded.price_unit")


def _save_sourcing(db: sqlite3.Connection, s: SkuSourcing) -> None:
    db.execute(SAVE_SOURCING, sourcing_params(s))


def _record_products(db: sqlite3.Connection, supplier: str, rows: Sequence[SupplierProductRow],
                     now: datetime) -> list[CostChange]:
    """Upsert a supplier's catalogue; the products whose cost changed (or that are new)."""
    changes = []
    for r in rows:
        old = db.execute("SELECT cost FROM supplier_products WHERE supplier = ? AND product_id = ?",
                         (supplier, r.product_id)).fetchone()
        db.execute(f"INSERT INTO supplier_products ({PRODUCT_COLS}, updated_at) VALUES (?,?,?,?,?,?,?,?)"
                   " ON CONFLICT (supplier, product_id) DO UPDATE SET name = excluded.name, cost = excluded.cost,"
                   " currency = excluded.currency, stock = excluded.stock, stock_count = excluded.stock_count,"
                   " updated_at = excluded.updated_at",
                   (supplier, r.product_id, r.name[:200], r.cost, r.currency, r.stock, r.stock_count, ts(now)))
        if old is None or int(old[0]) != r.cost:
            changes.append(CostChange(supplier, r.product_id, None if old is None else int(old[0]), r.cost))
    return changes


class Supply:
    """The SupplyStore verbs of SqliteStore (mixed in)."""

    _tx: Callable[..., Any]
    _one: Callable[..., Any]
    _all: Callable[..., Any]

    async def save_supplier(self, supplier: SupplierRecord, now: datetime) -> SupplierRecord:
        saved: SupplierRecord = await self._tx(_save_supplier, supplier, now)
        return saved

    async def suppliers(self) -> list[SupplierRecord]:
        return [supplier_record(r) for r in await self._all(f"SELECT {SUPPLIER_COLS} FROM suppliers ORDER BY name")]

    async def supplier_by_name(self, name: str) -> SupplierRecord | None:
        r = await self._one(f"SELECT {SUPPLIER_COLS} FROM suppliers WHERE name = ?", (name,))
        return supplier_record(r) if r else None

    async def plan_procurement(self, p: NewProcurement, now: datetime) -> Procurement | None:
        planned: Procurement | None = await self._tx(_plan, p, now)
        return planned

    async def mark_procurement_sent(self, our_ref: str, now: datetime) -> bool:
        return bool(await self._tx(_move, our_ref, ("planned",), "sent", None, now))

    async def mark_procurement_unknown(self, our_ref: str, detail: str, now: datetime) -> bool:
        return bool(await self._tx(_move, our_ref, ("sent",), "unknown", detail[:200], now))

    async def settle_procurement(self, our_ref: str, outcome: Settlement, codes: Sequence[NewCode],
                                 now: datetime) -> Procurement | None:
        settled: Procurement | None = await self._tx(_settle, our_ref, outcome, list(codes), now)
        return settled

    async def hold_procurement(self, our_ref: str, detail: str, now: datetime) -> bool:
        return bool(await self._tx(lambda db: db.execute(
            "UPDATE procurements SET held = 1, detail = ?, updated_at = ? WHERE our_ref = ?",
            (detail[:200], ts(now), our_ref)).rowcount == 1))

    async def procurement_by_ref(self, our_ref: str) -> Procurement | None:
        r = await self._one(f"SELECT {PROC_COLS} FROM procurements WHERE our_ref = ?", (our_ref,))
        return procurement(r) if r else None

    async def procurements(self, states: Sequence[ProcurementState], limit: int,
                           updated_before: datetime | None = None) -> list[Procurement]:
        marks = ",".join("?" * len(states))
        rows = await self._all(
            f"SELECT {PROC_COLS} FROM procurements WHERE state IN ({marks}) AND updated_at < ? ORDER BY id LIMIT ?",
            (*[s.value for s in states], ts(updated_before) if updated_before else "9999", limit))
        return [procurement(r) for r in rows]

    async def fail_backorder(self, order_id: int, cause: str, now: datetime) -> bool:
        return bool(await self._tx(fail_backorder, order_id, cause, ts(now)))

    async def order_procurements(self, order_id: int) -> list[Procurement]:
        rows = await self._all(f"SELECT {PROC_COLS} FROM procurements WHERE order_id = ? ORDER BY id", (order_id,))
        return [procurement(r) for r in rows]

    async def save_sku_sourcing(self, sourcing: SkuSourcing) -> None:
        await self._tx(_save_sourcing, sourcing)

    async def sku_sourcing(self, sku_id: int) -> SkuSourcing | None:
        r = await self._one(f"SELECT {SOURCING_COLS} FROM sku_sourcing WHERE sku_id = ?", (sku_id,))
        return sourcing(r) if r else None

    async def sku_sourcings(self) -> list[SkuSourcing]:
        return [sourcing(r) for r in await self._all(f"SELECT {SOURCING_COLS} FROM sku_sourcing ORDER BY sku_id")]

    async def record_supplier_products(self, supplier: str, rows: Sequence[SupplierProductRow],
                                       now: datetime) -> list[CostChange]:
        changes: list[CostChange] = await self._tx(_record_products, supplier, list(rows), now)
        return changes

    async def supplier_products(self) -> list[SupplierProductRow]:
        rows = await self._all(f"SELECT {PRODUCT_COLS} FROM supplier_products ORDER BY supplier, product_id")
        return [product_row(r) for r in rows]

    async def restock_candidates(self) -> list[tuple[int, SkuSourcing]]:
        rows = await self._all(
            "SELECT p.id, s.sku_id, s.own, s.sources, s.max_unit_cost, s.restock_quantity, s.on_demand,"
            " s.margin_floor, s.markup_bp, s.price_unit FROM pools p JOIN skus k ON k.pool_id = p.id"
            " JOIN sku_sourcing s ON s.sku_id = k.id"
            " WHERE p.available <= p.low_stock AND s.restock_quantity > 0 ORDER BY p.id, k.id")
        seen: dict[int, SkuSourcing] = {}
        for r in rows:
            seen.setdefault(int(r[0]), sourcing(r[1:]))
        return list(seen.items())
