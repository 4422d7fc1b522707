"""Two shops (issue 15's proof, issue 14's third supplier adapter): two `kamibot run` processes, each with its own
database (two SQLite files, or two PostgreSQL schemas with their own search_path), key file and HTTP port.

Shop A sells codes through its signed order API; shop B holds an API key and a prepaid wallet at A and has no
stock of its own: its SKU is sourced on demand from A (through fulfillment/suppliers/kamibot.py). Once B's
catalogue sync has seen A's stock, B's storefront offers it; a customer of B buys in Telegram (the fake Bot API) and
pays; B buys from A after the payment; A allocates the codes and debits B's wallet; B delivers the code; A's signed
order.delivered callbacks are acknowledged by B. The proof reads both databases afterwards:
delivered exactly once, the code the customer got is a code A allocated to B, B holds exactly what A allocated to
it, and the ledgers agree (A's sales to B == B's supplier costs == B's wallet debits at A).

Restocking from A is proven in tests/fulfillment/suppliers/test_kamibot_supply.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from bot.composition import build_shop
from bot.settings import Settings
from fulfillment.api_clients import ApiKeys, NewKey
from fulfillment.suppliers.credentials import seal_secret
from storage.records import OrderState, Price
from storage.records_supply import ProcurementState, SkuSource, SkuSourcing, SupplierRecord
from tests.conftest import PG_DSN, drop_pg_schema, pg_schema_or_skip
from tests.e2e import db_checks
from tests.e2e.procs import settings_env, spawn
from tests.e2e.walker import Walker
from tests.fakes.loopback import free_port
from tests.fakes.telegram_bot_api import FakeTelegram
from tests.storage.seed import make_shop

pytestmark = pytest.mark.timeout(120)
BUYER = 4242
API_PRICE = 700  # CNY fen per code, B's price at A
WALLET = 10_000
A_CODES = 10


@pytest.fixture(params=["sqlite", "postgres"])
async def two_dbs(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    """Shop A's and shop B's own databases: two SQLite files, or two PostgreSQL schemas of the test database (each
    process sees only its own through its search_path; cheaper to drop than two databases)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
        return
    schemas = [await pg_schema_or_skip(), await pg_schema_or_skip()]
    try:
        a, b = (f"{PG_DSN}?search_path={schema}" for schema in schemas)
        yield a, b
    finally:
        for schema in schemas:
            await drop_pg_schema(schema)


async def _seed_a(data_dir: Path, db_url: str) -> NewKey:
    """Shop A: SKU game-1 with A_CODES codes, an API price, a key for shop B with a prepaid wallet."""
    shop = await build_shop(Settings(data_dir=data_dir, database_url=db_url))
    try:
        seeded = await make_shop(shop.store, codes=A_CODES, vault=shop.vault)
        await shop.store.set_price(Price(seeded.sku.id, "api", "CNY", API_PRICE))
        keys = ApiKeys(shop.store, shop.vault)
        key = await keys.create("shop-b", ["catalog:read", "orders:write", "orders:read"])
        await keys.top_up(key.client.key_id, WALLET, "CNY", "prepaid by shop B")
        return key
    finally:
        await shop.close()


async def _seed_b(data_dir: Path, db_url: str, a_url: str, b_url: str, key: NewKey) -> None:
    """Shop B: no codes of its own; its SKU bought on demand from shop A's game-1 after each payment."""
    shop = await build_shop(Settings(data_dir=data_dir, database_url=db_url))
    try:
        seeded = await make_shop(shop.store, codes=0, vault=shop.vault, slug="resale")
        await shop.store.save_supplier(SupplierRecord(
            "shopA", "kamibot", a_url, key.client.key_id, seal_secret(shop.vault, "shopA", key.secret),
            notify_url=f"{b_url}/suppliers/shopA/notify"), datetime.now(UTC))
        await shop.store.save_sku_sourcing(SkuSourcing(seeded.sku.id, sources=(SkuSource("shopA", "game-1"),),
                                                       max_unit_cost=API_PRICE, on_demand=True))
    finally:
        await shop.close()


@contextlib.asynccontextmanager
async def _running(env: dict[str, str], name: str) -> AsyncIterator[subprocess.Popen[str]]:
    proc = spawn("bot", "run", env=env)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = await asyncio.to_thread(proc.communicate, timeout=30)
        except Exception:
            proc.kill()
            raise
        errors = [line for line in err.splitlines() if "ERROR" in line or "Traceback" in line]
        assert not errors, (name, errors[:5])


async def _up(url: str, proc: subprocess.Popen[str]) -> None:
    async with httpx.AsyncClient() as http:
        for _ in range(600):
            if proc.poll() is not None:
                raise AssertionError(f"the shop stopped: {proc.communicate()[1][-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(f"{url}/healthz")).status_code == 200:
                    return
            await asyncio.sleep(0.05)
    raise AssertionError(f"{url} never came up")


async def _sql(url: str, query: str) -> list[tuple[Any, ...]]:
    """A plain read of a running shop's database (SQLite in WAL mode, or PostgreSQL), outside the code under test."""
    if url.startswith("sqlite"):
        db = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            return [tuple(r) for r in db.execute(query).fetchall()]
        finally:
            db.close()
    conn = await asyncpg.connect(url)
    try:
        return [tuple(r) for r in await conn.fetch(query)]
    finally:
        await conn.close()


async def _until(url: str, query: str, what: str, limit_s: float = 30.0) -> None:
    """Until `query` on the shop's database answers a true first value."""
    deadline = asyncio.get_running_loop().time() + limit_s
    while asyncio.get_running_loop().time() < deadline:
        rows = await _sql(url, query)
        if rows and rows[0][0]:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {limit_s}s: {what}")


def _codes_in(message: dict[str, Any]) -> list[str]:
    """The text of each `code` entity (offsets in UTF-16 units, as Telegram counts them)."""
    raw = str(message["text"]).encode("utf-16-le")
    return [raw[2 * e["offset"]: 2 * (e["offset"] + e["length"])].decode("utf-16-le")
            for e in message.get("entities", []) if e.get("type") == "code"]


async def test_shop_b_sells_in_chat_codes_it_buys_from_shop_a_on_demand(tmp_path: Path, two_dbs: tuple[str, str],
                                                                   fake: FakeTelegram):
    db_url, db_url_b = two_dbs
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    a_dir.mkdir()
    b_dir.mkdir()
    a_port, b_port = free_port(), free_port()
    a_url, b_url = f"http://127.0.0.1:{a_port}", f"http://127.0.0.1:{b_port}"
    key = await _seed_a(a_dir, db_url)
    await _seed_b(b_dir, db_url_b, a_url, b_url, key)
    a_env = {**settings_env(a_dir, db_url), "KAMIBOT_HTTP_PORT": str(a_port),
             "KAMIBOT_API__ALLOW_PRIVATE_CALLBACKS": "true"}  # B listens on 127.0.0.1
    b_env = {**settings_env(b_dir, db_url_b), "KAMIBOT_HTTP_PORT": str(b_port), "KAMIBOT_DEFAULT_LANGUAGE": "en",
             "KAMIBOT_TELEGRAM__TOKEN": fake.token, "KAMIBOT_TELEGRAM__BASE_URL": fake.base_url,
             "KAMIBOT_TELEGRAM__BASE_FILE_URL": fake.base_file_url}
    async with _running(a_env, "shop A") as a_proc:
        await _up(a_url, a_proc)
        async with _running(b_env, "shop B") as b_proc:
            await fake.wait_for("deleteWebhook", timeout=60)
            await _up(b_url, b_proc)
            # B's catalogue sync reads A's products (what B's storefront offers for the on-demand SKU)
            await _until(db_url_b, "SELECT COUNT(*) FROM supplier_products WHERE stock_count > 0", "B synced A")
            assert await _sql(db_url_b, "SELECT COUNT(*) FROM procurements") == [(0,)]  # nothing bought before
            # a customer of B buys in chat and gets a code
            walker = Walker(fake, BUYER)
            walk = await walker.buy("charge-two-shops-1")
            later = [m for _, m in await _later_messages(walker, 0.5)]
            # every order.delivered callback A queued for B was verified and acknowledged by B
            await _until(db_url, "SELECT COUNT(*) > 0 AND COUNT(*) = SUM(CASE WHEN status = 'done' THEN 1 ELSE 0"
                                 " END) FROM outbox WHERE kind = 'callback'", "A's callbacks acknowledged")
            await _until(db_url_b, "SELECT COUNT(*) = 0 FROM procurements WHERE state IN ('planned', 'sent',"
                                   " 'unknown')", "B's purchases settled")
    [delivery] = [m for chat, _, m in fake.shown_log if chat == BUYER and _is_code(m)]  # exactly one
    delivered = sorted(_codes_in(delivery))
    assert not [m for m in later if _is_code(m)]  # nothing more came after it

    # shop A: its orders for B, the codes it allocated to them, the wallet and the ledger
    shop_a = await build_shop(Settings(data_dir=a_dir, database_url=db_url))
    try:
        a_orders = await shop_a.store.orders_for_user("api", f"client:{key.client.id}", 100, 0)
        a_codes = {o.ref: sorted(shop_a.vault.open(i.code) for i in await shop_a.store.order_items(o.id))
                   for o in a_orders}
        wallet = await shop_a.store.wallet_balances(key.client.id)
        wallet_lines = await shop_a.store.wallet_lines(key.client.id, 100)
        a_ledger = await shop_a.store.ledger(datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC))
    finally:
        await shop_a.close()
    # shop B: the customer's order, its procurements from A, the codes it holds, its ledger
    shop_b = await build_shop(Settings(data_dir=b_dir, database_url=db_url_b))
    try:
        b_order = await shop_b.store.order_by_ref(walk.ref)
        assert b_order is not None
        sold = sorted(shop_b.vault.open(i.code) for i in await shop_b.store.order_items(b_order.id))
        procurements = await shop_b.store.procurements(list(ProcurementState), 100)
        b_ledger = await shop_b.store.ledger(datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC))
        b_held = await _sql(db_url_b, "SELECT COUNT(*) FROM codes")
    finally:
        await shop_b.close()

    # delivered exactly once: the customer's order, the code shown in chat
    assert b_order.state is OrderState.DELIVERED
    assert delivered == sold
    assert len(sold) == b_order.quantity * b_order.units
    # what B bought, A sold: one A order per procurement, each delivered, received in full, codes A allocated
    bought = [p for p in procurements if p.state is ProcurementState.SUCCEEDED]
    assert bought
    assert {p.supplier_order_id for p in bought} == set(a_codes)
    assert all(o.state is OrderState.DELIVERED for o in a_orders)
    assert all((p.supplier, p.received, p.duplicates, p.shortfall) == ("shopA", p.quantity, 0, 0) for p in bought)
    assert set(sold) <= {c for codes in a_codes.values() for c in codes}  # the customer got a code A allocated
    assert b_held[0][0] == sum(len(codes) for codes in a_codes.values())  # B holds exactly what A allocated to B
    # the ledgers agree: A's sales to B == B's supplier costs == B's wallet debits at A
    a_sales = sum(line.amount for line in a_ledger if line.channel == "api" and line.kind == "sale")
    b_costs = sum(p.cost or 0 for p in bought)
    debits = -sum(ln.amount for ln in wallet_lines if ln.kind == "order")
    assert len(bought) == 1
    assert bought[0].order_id == b_order.id  # bought for the customer's paid order
    assert a_sales == b_costs == debits == sum(o.amount for o in a_orders) == API_PRICE * len(sold)
    assert wallet == {"CNY": WALLET - debits}
    # the cost of the code B sold is its purchase price from A, in A's currency
    assert [(ln.kind, ln.currency, ln.amount) for ln in b_ledger if ln.kind == "cost"] == [
        ("cost", "CNY", -API_PRICE * len(sold))]  # cost lines are negative
    assert [(ln.kind, ln.currency) for ln in b_ledger if ln.kind == "sale"] == [("sale", "XTR")]  # paid in Stars
    for url in (db_url, db_url_b):
        bad, _ = await db_checks.run(url)
        assert {name: rows for name, rows in bad.items() if rows} == {}


def _is_code(message: dict[str, Any]) -> bool:
    return any(e.get("type") == "code" for e in message.get("entities", []))


async def _later_messages(walker: Walker, for_s: float) -> list[tuple[str, dict[str, Any]]]:
    """What reaches the buyer's chat in the next `for_s` seconds."""
    seen: list[tuple[str, dict[str, Any]]] = []
    with contextlib.suppress(AssertionError):
        walker.timeout_s = for_s
        while True:
            seen.append(await walker._next())
    return seen
