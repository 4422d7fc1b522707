"""The report module over a big ledger: 1,000,000 paid orders spread over a year (a sale line, a cost line and,
for every other order, a fee line each), then a 30-day report grouped by SKU and one grouped by channel
(`MoneyReports.report`, what /report, the CLI and the dashboard call) against a bare SQL GROUP BY over the same
rows in the same run, on SQLite and PostgreSQL.

    python benchmarks/bench_reports.py [--orders 1000000] [--runs 5] [--no-pg]

Rows are bulk-loaded (one executemany transaction on SQLite, COPY on PostgreSQL). Each timing is the best of
--runs. Prints one JSON line; target (issue 16): report ≤ 3 × bare GROUP BY on each backend."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fulfillment.money_report import MoneyReports  # noqa: E402
from fulfillment.orders import STATE_GROUPS  # noqa: E402
from storage.records import Price, Product, Sku  # noqa: E402
from storage.sqltime import ts  # noqa: E402

PG_DSN = os.environ.get("KAMIBOT_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
TZ = "Asia/Shanghai"
YEAR_START = datetime(2026, 1, 1, tzinfo=UTC)
FIRST, LAST = date(2026, 6, 1), date(2026, 7, 1)  # the 30-day report
CHANNELS = (("telegram", "XTR"), ("wechat", "CNY"), ("console", "CNY"), ("api", "CNY"))
SKUS = 40
BARE = ("SELECT {key}, kind, currency, SUM(amount) FROM {table} WHERE at >= {lo} AND at < {hi}"
        " GROUP BY {key}, kind, currency")


async def catalogue(store: Any) -> tuple[list[int], int]:
    cat = await store.upsert_category("bench", "Bench", "测试", 0)
    product = await store.upsert_product(Product(0, cat.id, "bench-p", "Bench", "测试"))
    pool = await store.upsert_pool("bench-pool", "Bench pool", 0)
    ids = []
    for i in range(SKUS):
        sku = await store.upsert_sku(Sku(0, product.id, pool.id, f"sku-{i}", f"SKU {i}", f"商品 {i}"))
        await store.set_price(Price(sku.id, "console", "CNY", 1000))
        ids.append(sku.id)
    return ids, pool.id


CHUNK = 100_000


def chunks(n: int, skus: list[int], pool: int) -> Iterator[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]]:
    """Orders and their ledger lines over the year (times as aware datetimes), CHUNK orders at a time."""
    rnd = random.Random(16)
    for first in range(1, n + 1, CHUNK):
        yield rows(rnd, range(first, min(n, first + CHUNK - 1) + 1), skus, pool)


def rows(rnd: random.Random, ids: range, skus: list[int], pool: int
         ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    span = 365 * 86_400
    orders, ledger = [], []
    for i in ids:
        at = YEAR_START + timedelta(seconds=rnd.randrange(span))
        channel, currency = CHANNELS[rnd.randrange(len(CHANNELS))]
        sku = skus[rnd.randrange(len(skus))]
        amount = rnd.randrange(100, 50_000)
        orders.append((i, f"B{i}", channel, f"u{rnd.randrange(200_000)}", "c", sku, pool, 1, 1, amount, currency,
                       "delivered", "en", at, at, at))
        ledger.append((i, sku, channel, "sale", currency, amount, at))
        ledger.append((i, sku, channel, "cost", "CNY", -(amount // 3), at))
        if i % 2:
            ledger.append((i, sku, channel, "fee", currency, -(amount // 100), at))
    return orders, ledger


ORDER_COLS = ("id", "ref", "channel", "user_id", "chat_id", "sku_id", "pool_id", "quantity", "units", "amount",
              "currency", "state", "language", "created_at", "expires_at", "updated_at")
LEDGER_COLS = ("order_id", "sku_id", "channel", "kind", "currency", "amount", "at")


def load_sqlite(path: Path, n: int, skus: list[int], pool: int) -> int:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN")
    lines = 0
    for orders, ledger in chunks(n, skus, pool):
        db.executemany(f"INSERT INTO orders ({', '.join(ORDER_COLS)}) VALUES ({', '.join('?' * len(ORDER_COLS))})",
                       [(*o[:13], ts(o[13]), ts(o[14]), ts(o[15])) for o in orders])
        db.executemany(f"INSERT INTO ledger ({', '.join(LEDGER_COLS)}) VALUES (?,?,?,?,?,?,?)",
                       [(*r[:6], ts(r[6])) for r in ledger])
        lines += len(ledger)
    db.execute("COMMIT")
    db.execute("ANALYZE")
    db.close()
    return lines


async def best(runs: int, fn: Callable[[], Awaitable[Any]]) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        await fn()
        times.append(time.perf_counter() - start)
    return min(times)


async def measure(store: Any, bare: Callable[[str], Awaitable[Any]], runs: int) -> dict[str, float]:
    reports = MoneyReports(store, TZ)
    await reports.report(FIRST, LAST, "sku")  # warm the cache and the SKU labels

    async def report_both() -> None:
        await reports.report(FIRST, LAST, "sku")
        await reports.report(FIRST, LAST, "channel")

    async def bare_both() -> None:
        await bare("sku_id")
        await bare("channel")

    rep_s, bare_s = await best(runs, report_both), await best(runs, bare_both)
    return {"report_ms": round(rep_s * 1000, 1), "bare_ms": round(bare_s * 1000, 1),
            "ratio": round(rep_s / bare_s, 2)}


async def on_sqlite(n: int, runs: int) -> dict[str, float]:
    from storage.sqlite import SqliteStore

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        store = await SqliteStore(path, states=STATE_GROUPS).open()
        await store.migrate()
        skus, pool = await catalogue(store)
        start = time.perf_counter()
        lines = await asyncio.to_thread(load_sqlite, path, n, skus, pool)
        load_s = time.perf_counter() - start
        reports = MoneyReports(store, TZ)
        since, until = (await reports.report(FIRST, LAST, "channel")).since, (await reports.report(
            FIRST, LAST, "channel")).until
        bare_db = sqlite3.connect(path)

        async def bare(key: str) -> Any:
            sql = BARE.format(key=key, table="ledger", lo="?", hi="?")
            return bare_db.execute(sql, (ts(since), ts(until))).fetchall()

        result = await measure(store, bare, runs)
        bare_db.close()
        await store.close()
    return {**result, "load_s": round(load_s, 1), "ledger_rows": lines}


async def on_postgres(n: int, runs: int) -> dict[str, float]:
    import asyncpg

    from storage.postgres import PostgresStore

    schema = "kbbench_" + secrets.token_hex(4)
    conn = await asyncpg.connect(PG_DSN)
    await conn.execute(f"CREATE SCHEMA {schema}")
    try:
        store = await PostgresStore(PG_DSN, schema=schema, states=STATE_GROUPS).open()
        await store.migrate()
        skus, pool = await catalogue(store)
        start = time.perf_counter()
        lines = 0
        for orders, ledger in chunks(n, skus, pool):
            await conn.copy_records_to_table("orders", records=orders, columns=ORDER_COLS, schema_name=schema)
            await conn.copy_records_to_table("ledger", records=ledger, columns=LEDGER_COLS, schema_name=schema)
            lines += len(ledger)
        await conn.execute(f"ANALYZE {schema}.orders; ANALYZE {schema}.ledger")
        load_s = time.perf_counter() - start
        reports = MoneyReports(store, TZ)
        rep = await reports.report(FIRST, LAST, "channel")

        async def bare(key: str) -> Any:
            sql = BARE.format(key=key, table=f"{schema}.ledger", lo="$1", hi="$2")
            return await conn.fetch(sql, rep.since, rep.until)

        result = await measure(store, bare, runs)
        await store.close()
    finally:
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
        await conn.close()
    return {**result, "load_s": round(load_s, 1), "ledger_rows": lines}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-pg", action="store_true")
    args = parser.parse_args()
    out: dict[str, Any] = {"bench": "reports", "orders": args.orders, "days": (LAST - FIRST).days,
                           "grouped_by": ["sku", "channel"], "target_ratio": 3.0}
    out["sqlite"] = await on_sqlite(args.orders, args.runs)
    if not args.no_pg:
        out["postgres"] = await on_postgres(args.orders, args.runs)
    out["ok"] = all(out[b]["ratio"] <= 3.0 for b in ("sqlite", "postgres") if b in out)
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
