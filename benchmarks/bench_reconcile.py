"""Reconcile a 100,000-row WeChat Pay trade bill (ALL, gzip, the documented format) against a shop holding the same
day's 100,000 payments: seconds and peak RSS of the reconciling process, which only reconciles (the shop and the
bill are made by a separate process first).

    python benchmarks/bench_reconcile.py [--rows 100000] [--backend sqlite|postgres]

Planted: 10 amounts that differ, 10 payments the bill lacks, 10 trades the shop lacks, 5 refunds only WeChat Pay
made; every matched payment gets its actual fee (0.6%). Prints one JSON line. Targets (issue 16): <= 10 s, peak
RSS < 200 MB, and exactly the 35 planted discrepancies found. `cpu_seconds` (the process's CPU time, every thread)
and the load average are printed beside the wall seconds: on a shared, busy machine they tell the two apart.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import hashlib
import json
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PG_DSN = os.environ.get("KAMIBOT_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
DAY = date(2026, 11, 25)
RECEIVED = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)  # 12:00 Beijing
PLANTED = 35


async def _open(backend: str, where: str):  # noqa: ANN202 - a Store of either backend
    from fulfillment.orders import STATE_GROUPS

    if backend == "sqlite":
        from storage.sqlite import SqliteStore

        return await SqliteStore(Path(where), states=STATE_GROUPS).open()
    from storage.postgres import PostgresStore

    return await PostgresStore(PG_DSN, schema=where, states=STATE_GROUPS).open()


def _bill(rows: int, amounts: list[int], txns: list[str], refs: list[str]) -> bytes:
    from tests.fakes.wechatpay_api import FakeWeChatPay, y

    fee = lambda fen: (fen * 60 + 5000) // 10000  # noqa: E731 - the fake's 0.6%
    day = DAY.isoformat()
    lines = [FakeWeChatPay.ALL_HEADER]
    paid = back = fees = count = 0

    def row(txn: str, trade: str, state: str, amount: int, refund: int) -> str:
        return ",".join("`" + f for f in [
            f"{day} 12:00:00", "wxd678efh567hg6787", "1900000109", "0", "", txn, trade, "o-bench", "JSAPI", state,
            "OTHERS", "CNY", y(amount), "0.00", "50" + txn[2:] if refund else "", "R" + trade if refund else "",
            y(refund), "0.00", "ORIGINAL" if refund else "", "SUCCESS" if refund else "", "goods", "",
            y(-fee(refund) if refund else fee(amount)), "0.60%", y(amount), y(refund), ""])

    for i in range(rows):
        if i % 10_000 == 5:  # planted: the bill lacks this payment
            continue
        amount = amounts[i] + (1 if i % 10_000 == 0 else 0)  # planted: another amount
        lines.append(row(txns[i], refs[i] + "-J", "SUCCESS", amount, 0))
        paid, fees, count = paid + amount, fees + fee(amount), count + 1
    for i in range(10):  # planted: trades the shop never heard of
        lines.append(row(f"43{i:026d}", f"ZZ{i:010d}-N", "SUCCESS", 500, 0))
        paid, fees, count = paid + 500, fees + fee(500), count + 1
    for i in range(5):  # planted: refunds only WeChat Pay made
        lines.append(row(txns[100 + i], refs[100 + i] + "-J", "REFUND", 0, amounts[100 + i]))
        back, fees, count = back + amounts[100 + i], fees - fee(amounts[100 + i]), count + 1
    lines += [FakeWeChatPay.ALL_SUMMARY,
              ",".join("`" + f for f in [str(count), y(paid), y(back), "0.00", y(fees), y(paid), y(back)])]
    return ("\r\n".join(lines) + "\r\n").encode()


async def seed(backend: str, where: str, rows: int, bill_path: Path) -> None:
    from storage.sqltime import ts
    from tests.storage.seed import make_shop

    if backend == "postgres":
        import asyncpg

        conn = await asyncpg.connect(PG_DSN)
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{where}"')
        await conn.close()
    store = await _open(backend, where)
    try:
        await store.migrate()
        shop = await make_shop(store, codes=0)
        refs = [f"B{i:011d}" for i in range(rows)]
        txns = [f"42{i:026d}" for i in range(rows)]
        amounts = [1000 + i % 500 for i in range(rows)]
        orders = [(i + 1, refs[i], "wechat", f"u{i}", f"c{i}", shop.sku.id, shop.pool.id, 1, 1, amounts[i], "CNY",
                   "delivered", "zh_CN", RECEIVED, RECEIVED, RECEIVED) for i in range(rows)]
        payments = [("wechatpay", txns[i], refs[i], amounts[i], "CNY", RECEIVED, RECEIVED, "allocated", i + 1)
                    for i in range(rows)]
        sales = [(i + 1, shop.sku.id, "wechat", "sale", "CNY", amounts[i], RECEIVED) for i in range(rows)]
        if backend == "sqlite":
            import sqlite3

            db = sqlite3.connect(where)
            conv = [tuple(ts(v) if isinstance(v, datetime) else v for v in r) for r in orders]
            db.executemany("INSERT INTO orders (id, ref, channel, user_id, chat_id, sku_id, pool_id, quantity, units,"
                           " amount, currency, state, language, created_at, expires_at, updated_at)"
                           " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", conv)
            db.executemany("INSERT INTO payment_events (provider, provider_txn_id, order_ref, amount, currency,"
                           " received_at, applied_at, outcome, order_id) VALUES (?,?,?,?,?,?,?,?,?)",
                           [tuple(ts(v) if isinstance(v, datetime) else v for v in r) for r in payments])
            db.executemany("INSERT INTO ledger (order_id, sku_id, channel, kind, currency, amount, at)"
                           " VALUES (?,?,?,?,?,?,?)", [(*r[:6], ts(r[6])) for r in sales])
            db.commit()
            db.close()
        else:
            async with store.pool.acquire() as conn:
                await conn.copy_records_to_table("orders", records=orders, columns=[
                    "id", "ref", "channel", "user_id", "chat_id", "sku_id", "pool_id", "quantity", "units", "amount",
                    "currency", "state", "language", "created_at", "expires_at", "updated_at"], schema_name=where)
                await conn.copy_records_to_table("payment_events", records=payments, columns=[
                    "provider", "provider_txn_id", "order_ref", "amount", "currency", "received_at", "applied_at",
                    "outcome", "order_id"], schema_name=where)
                await conn.copy_records_to_table("ledger", records=sales, columns=[
                    "order_id", "sku_id", "channel", "kind", "currency", "amount", "at"], schema_name=where)
                await conn.execute(f'ANALYZE "{where}".payment_events; ANALYZE "{where}".ledger')
    finally:
        await store.close()
    text = _bill(rows, amounts, txns, refs)
    bill_path.write_bytes(gzip.compress(text))
    bill_path.with_suffix(".sha1").write_text(hashlib.sha1(text).hexdigest())  # noqa: S324 - WeChat Pay's


async def measure(backend: str, where: str, bill_path: Path) -> dict[str, object]:
    from fulfillment.reconcile import Reconciliation
    from fulfillment.reconcile_wechatpay import BEIJING_TZ, reconcile_bill

    store = await _open(backend, where)
    try:
        raw, sha1 = bill_path.read_bytes(), bill_path.with_suffix(".sha1").read_text()
        recon = Reconciliation(store, clock=lambda: datetime(2026, 11, 27, 6, tzinfo=UTC))

        async def collect(day: date, zone: object) -> object:
            return await reconcile_bill(store, day, raw, sha1)

        recon.add("wechatpay", collect, BEIJING_TZ, 10)  # type: ignore[arg-type]
        start, cpu = time.perf_counter(), time.process_time()
        outcome = await recon.run("wechatpay", DAY, "bench", "bench")
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    finally:
        await store.close()
    return {"seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2), "load_1min": round(os.getloadavg()[0], 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                                               / 1024, 1),
            "bill_rows": outcome.checked, "found": outcome.found, "fees_corrected": outcome.fees_corrected}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--phase", choices=["all", "seed", "measure"], default="all")
    p.add_argument("--where", default="")
    p.add_argument("--bill", default="")
    a = p.parse_args()
    if a.phase == "seed":
        asyncio.run(seed(a.backend, a.where, a.rows, Path(a.bill)))
        return 0
    if a.phase == "measure":
        print(json.dumps(asyncio.run(measure(a.backend, a.where, Path(a.bill)))))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        where = str(Path(tmp) / "shop.db") if a.backend == "sqlite" else f"bench_recon_{secrets.token_hex(4)}"
        bill = Path(tmp) / "bill.gz"
        common = [sys.executable, __file__, "--backend", a.backend, "--where", where, "--bill", str(bill)]
        subprocess.run([*common, "--phase", "seed", "--rows", str(a.rows)], check=True)
        try:
            out = subprocess.run([*common, "--phase", "measure"], check=True, capture_output=True, text=True).stdout
        finally:
            if a.backend == "postgres":
                import asyncpg

                async def drop() -> None:
                    conn = await asyncpg.connect(PG_DSN)
                    await conn.execute(f'DROP SCHEMA IF EXISTS "{where}" CASCADE')
                    await conn.close()

                asyncio.run(drop())
    result = json.loads(out.strip().splitlines()[-1])
    result = {"bench": "reconcile_wechatpay_bill", "backend": a.backend, "rows": a.rows, **result,
              "planted": PLANTED, "exact": result["found"] == PLANTED,
              "targets": {"seconds": 10, "peak_rss_mb": 200}}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
