"""4 OS processes × 50 concurrent API clients on one wallet (issue 15): every process sends the same 200 order
numbers; the wallet pays for 150. Each number becomes at most one order, each order is debited exactly once, the
balance never goes below zero and the wallet ledger adds up; the allocation invariants hold (plain SQL)."""

from __future__ import annotations

import json
from pathlib import Path

from bot.composition import build_shop
from bot.settings import Settings
from fulfillment.api_clients import ApiKeys
from storage.records import Price
from tests.e2e import db_checks
from tests.e2e.procs import settings_env, spawn
from tests.storage.seed import make_shop

PROCESSES = 4
CONCURRENCY = 50
NUMBERS = 200
PAID_FOR = 150
PRICE = 700


async def test_one_wallet_across_processes_is_never_overdrawn(tmp_path: Path, db_url: str) -> None:
    # given a client whose wallet pays for 150 orders, and stock for 300
    shop = await build_shop(Settings(data_dir=tmp_path, database_url=db_url))
    seeded = await make_shop(shop.store, codes=300, vault=shop.vault)
    await shop.store.set_price(Price(seeded.sku.id, "api", "CNY", PRICE))
    keys = ApiKeys(shop.store, shop.vault)
    key = await keys.create("shop-b", ["orders:write"])
    await keys.top_up(key.client.key_id, PAID_FOR * PRICE, "CNY", "seed")
    await shop.close()
    # when 4 processes × 50 clients send the same 200 order numbers at once
    env = {**settings_env(tmp_path, db_url), "KB_TEST_API_KEY": key.client.key_id, "KB_TEST_API_SECRET": key.secret,
           "KAMIBOT_API__RATE_PER_S": "100000", "KAMIBOT_API__BURST": "100000"}
    procs = [spawn("tests.e2e.api_buyer", str(n), str(NUMBERS), str(CONCURRENCY), seeded.sku.slug, env=env)
             for n in range(PROCESSES)]
    counts: dict[str, int] = {}
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err[-3000:]
        for code, n in json.loads(out.strip().splitlines()[-1]).items():
            counts[code] = counts.get(code, 0) + n
    # then: only OK and INSUFFICIENT_BALANCE answers, 150 orders, each debited once, the ledger adds up
    assert set(counts) == {"OK", "INSUFFICIENT_BALANCE"}
    assert sum(counts.values()) == PROCESSES * NUMBERS
    shop = await build_shop(Settings(data_dir=tmp_path, database_url=db_url))
    store, cid = shop.store, key.client.id
    orders = await store.orders_for_user("api", f"client:{cid}", 1000, 0)
    lines = await store.wallet_lines(cid, 1000)
    debits = [ln for ln in lines if ln.kind == "order"]
    balance = await store.wallet_balances(cid)
    await shop.close()
    assert len(orders) == PAID_FOR
    assert sorted(ln.order_id or 0 for ln in debits) == sorted(o.id for o in orders)
    assert balance == {"CNY": 0}
    assert sum(ln.amount for ln in lines) == 0
    assert min(ln.balance_after for ln in lines) >= 0
    bad, totals = await db_checks.run(db_url)
    assert {name: rows for name, rows in bad.items() if rows} == {}
    assert totals["items"] == PAID_FOR
