"""Shop B's procurement and restock through the kamibot adapter, against a REAL shop A serving its order API on
127.0.0.1 (A on the `store` fixture: SQLite and PostgreSQL; B on its own SQLite store with its own vault).

Proved by both shops' records: what B received is what A allocated, what B's batch cost is what A debited from B's
wallet, one order at A per procurement, and nothing changes on a refusal or a forged callback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fulfillment.api_signing import Signer
from fulfillment.orders import STATE_GROUPS
from storage.records import EncryptedCode
from storage.records_supply import Procurement, ProcurementState, SkuSource, SkuSourcing
from storage.sqlite import SqliteStore

from .kamibot_upstream import API_PRICE, Downstream, Upstream, downstream, upstream

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def shops(store: Any, tmp_path: Path) -> AsyncIterator[tuple[Upstream, Downstream]]:
    async with upstream(store, tmp_path / "a") as a, downstream(a, tmp_path / "b.db") as b:
        yield a, b


def _sourcing(b: Downstream, **extra: Any) -> SkuSourcing:
    return SkuSourcing(b.seeded.sku.id, sources=(SkuSource("shopA", "game-1"),), max_unit_cost=API_PRICE,
                       **{"restock_quantity": 4, **extra})


async def _received(a: Upstream, b: Downstream, p: Procurement) -> tuple[list[str], list[str]]:
    """(codes B's pool holds, codes A allocated to the order behind `p`), each sorted."""
    [order] = [o for o in await a.orders() if o.ref == p.supplier_order_id]
    rows = await b.store._scan("SELECT id, digest, key_id, nonce, ciphertext FROM codes WHERE pool_id = ?",
                               (b.seeded.pool.id,))
    held = sorted(b.vault.open(EncryptedCode(int(r[0]), bytes(r[1]), r[2], bytes(r[3]), bytes(r[4]))) for r in rows)
    return held, sorted(await a.codes_of(order.id))


async def test_restock_from_shop_a_automatic_by_hand_and_after_a_lost_answer(shops: tuple[Upstream, Downstream]):
    a, b = shops
    await b.store.save_sku_sourcing(_sourcing(b))
    assert await b.sourcing.restock_due() == 1
    [p] = await b.store.procurements(list(ProcurementState), 10)
    assert (p.state, p.received, p.duplicates, p.shortfall) == (ProcurementState.SUCCEEDED, 4, 0, 0)
    held, allocated = await _received(a, b, p)
    assert held == allocated
    assert len(held) == 4
    [order] = await a.orders()
    assert p.cost == order.amount == 4 * API_PRICE  # B's supplier cost == A's sale to B
    assert await a.wallet() == 10_000 - 4 * API_PRICE
    [batch_cost] = await b.store._scan("SELECT unit_cost FROM code_batches WHERE id = ?", (p.batch_id,))
    assert batch_cost[0] * p.received == order.amount
    assert await b.store.pool_available(b.seeded.pool.id) == 4
    assert await b.sourcing.restock_due() == 0  # 4 > 3: not low any more
    assert len(await a.orders()) == 1
    # the merchant's /restock POOL 2 from=shopA: the same path by hand
    by_hand = await b.sourcing.restock(b.seeded.pool.id, _sourcing(b), 2, only="shopA")
    assert by_hand is not None
    assert (by_hand.state, by_hand.received) == (ProcurementState.SUCCEEDED, 2)
    assert await b.store.pool_available(b.seeded.pool.id) == 6
    assert await a.wallet() == 10_000 - 6 * API_PRICE
    # a 5xx after A placed the order: unknown, then the query job (resolve_due) settles it from A's record
    a.faults.http_500_after_accept = 1
    lost = await b.procurement.buy("shopA", "game-1", 3, API_PRICE, "CNY", b.seeded.pool.id)
    assert lost is not None
    assert lost.state is ProcurementState.UNKNOWN
    assert await b.procurement.resolve_due() == 1
    done = await b.store.procurement_by_ref(lost.our_ref)
    assert done is not None
    assert (done.state, done.received, done.cost) == (ProcurementState.SUCCEEDED, 3, 3 * API_PRICE)
    assert len(await a.orders()) == 3
    assert await a.wallet() == 10_000 - 9 * API_PRICE
    assert await b.store.pool_available(b.seeded.pool.id) == 9


async def test_a_lost_answer_is_unknown_forged_callbacks_change_nothing_the_real_one_settles_it(
        shops: tuple[Upstream, Downstream]):
    a, b = shops
    await b.store.save_sku_sourcing(_sourcing(b))
    a.faults.hold_after_accept = 1
    assert await b.sourcing.restock_due() == 0
    [p] = await b.store.procurements(list(ProcurementState), 10)
    assert p.state is ProcurementState.UNKNOWN  # never "failed": A did place it
    assert await b.sourcing.restock_due() == 0  # the open restock blocks a second purchase
    assert len(await a.orders()) == 1
    await _forged_callbacks_change_nothing(a, b, p)
    await a.deliver()  # A completes the order and calls B back (order.delivered): B reads the codes by query
    settled = await b.store.procurement_by_ref(p.our_ref)
    assert settled is not None
    assert (settled.state, settled.received) == (ProcurementState.SUCCEEDED, 4)
    assert await b.procurement.resolve_due() == 0  # the later query finds it settled: a no-op
    held, allocated = await _received(a, b, settled)
    assert held == allocated
    assert len(held) == 4
    assert len(await a.orders()) == 1
    assert await a.wallet() == 10_000 - 4 * API_PRICE


async def test_shop_a_out_of_balance_fails_definitively_and_nothing_changes(store: Any, tmp_path: Path):
    async with upstream(store, tmp_path / "a", wallet=API_PRICE) as a, downstream(a, tmp_path / "b.db") as b:
        p = await b.procurement.buy("shopA", "game-1", 2, API_PRICE, "CNY", b.seeded.pool.id)
        assert p is not None
        assert (p.state, p.detail) == (ProcurementState.FAILED, "supplier.insufficient_balance")
        assert await a.orders() == []
        assert await a.wallet() == API_PRICE
        assert await store.pool_available(a.seeded.pool.id) == 10
        assert await b.store.pool_available(b.seeded.pool.id) == 0
        # the sourcing reads the balance first and does not even try
        await b.store.save_sku_sourcing(_sourcing(b))
        assert await b.sourcing.restock_due() == 0
        assert len(await b.store.procurements(list(ProcurementState), 10)) == 1


async def _forged_callbacks_change_nothing(a: Upstream, b: Downstream, p: Procurement) -> None:
    """order.failed for an unknown procurement, signed with a guessed secret, then unsigned: 403, nothing changes."""
    [order] = await a.orders()
    body = json.dumps({"event_id": "evt_1_failed", "type": "order.failed", "created_at": "2026-12-02T10:00:00+00:00",
                       "order": {"client_order_no": p.our_ref, "order_no": order.ref, "sku": "game-1",
                                 "quantity": p.quantity, "amount": order.amount, "currency": "CNY"}}).encode()
    forged = Signer(a.key.client.key_id, "guessed-secret").headers("POST", "/suppliers/shopA/notify", "", body)
    async with httpx.AsyncClient() as http:
        for headers in (forged, {}):
            answer = await http.post(b.notify_url, content=body,
                                     headers={**headers, "content-type": "application/json"})
            assert answer.status_code == 403
    after = await b.store.procurement_by_ref(p.our_ref)
    assert after is not None
    assert (after.state, after.received) == (ProcurementState.UNKNOWN, 0)
    assert await b.store.pool_available(b.seeded.pool.id) == 0


async def test_merchant_adds_shop_a_with_the_cli_and_tests_it(tmp_path: Path):
    """`kamibot suppliers add NAME --protocol kamibot` (the API secret on stdin, never printed), then `test`, as
    real processes against shop A (the CLI is the same on both backends: one run, A on SQLite)."""
    from tests.bot.test_suppliers_cli import kamibot

    a_store = await SqliteStore(tmp_path / "a.db", states=STATE_GROUPS).open()
    await a_store.migrate()
    async with upstream(a_store, tmp_path / "a") as a:
        b_dir = tmp_path / "b"
        b_dir.mkdir()
        code, out, err = await kamibot(b_dir, "suppliers", "add", "shopA", "--protocol", "kamibot", "--url", a.url,
                                       "--account", a.key.client.key_id, "--notify-url",
                                       "https://b.example.com/suppliers/shopA/notify",
                                       stdin=a.key.secret.encode() + b"\n")
        assert code == 0, err
        code, out, err = await kamibot(b_dir, "suppliers", "test", "shopA")
        assert code == 0, err
        assert "shopA: ok, balance 100.00 CNY, 1 products" in out
        assert "game-1 1 code: cost 7.00 CNY in_stock card" in out
        assert a.key.secret not in out + err
    await a_store.close()


async def test_migration_0015_keeps_existing_suppliers_and_admits_the_kamibot_protocol(tmp_path: Path):
    """SQLite rebuilds the suppliers table to widen its CHECK (PostgreSQL swaps the constraint; the two-shop e2e
    saves a kamibot supplier there): rows and ids survive, an unknown protocol is still refused."""
    import sqlite3
    from datetime import UTC, datetime

    from storage.records_supply import SealedSecret, SupplierRecord

    def row(name: str, protocol: str) -> SupplierRecord:
        return SupplierRecord(name, protocol, "http://127.0.0.1:9", "1", SealedSecret("k1", b"n" * 12, b"c"))

    s = await SqliteStore(tmp_path / "old.db", states=STATE_GROUPS).open()
    await s.migrate(target=9)
    await s.save_supplier(row("kw", "kashangwl"), datetime.now(UTC))
    assert await s.migrate() >= 15
    await s.save_supplier(row("shopA", "kamibot"), datetime.now(UTC))
    rows = [(r.name, r.protocol, r.id) for r in await s.suppliers()]
    assert rows == [("kw", "kashangwl", 1), ("shopA", "kamibot", 2)]
    with pytest.raises(sqlite3.IntegrityError):
        await s.save_supplier(row("odd", "telepathy"), datetime.now(UTC))
    await s.close()
