"""4 OS processes × 50 concurrent buyers, 2,000 attempts on 1,000 code uses (with multi-use codes).

Exactly the stock is sold and every use belongs to exactly one order line: checked by SQL on the database.
"""

from __future__ import annotations

import json

from bot.composition import build_shop
from bot.settings import Settings
from tests.e2e import db_checks
from tests.e2e.procs import settings_env, spawn
from tests.storage.seed import make_shop

PROCESSES = 4
CONCURRENCY = 50
ATTEMPTS = 2_000


async def _seed(tmp_path, db_url):
    shop = await build_shop(Settings(data_dir=tmp_path, database_url=db_url))
    seeded = await make_shop(shop.store, codes=800, vault=shop.vault)  # 800 single-use codes
    batch = await shop.store.create_batch(seeded.pool.id, "acme", 30, "CNY", "multi")
    await shop.store.insert_codes(batch, seeded.pool.id, [shop.vault.seal(f"MULTI-{i}", 4) for i in range(50)])
    assert await shop.store.pool_available(seeded.pool.id) == 1_000
    await shop.close()
    return seeded


async def test_no_oversell_and_no_double_allocation_across_processes(tmp_path, db_url):
    seeded = await _seed(tmp_path, db_url)
    env = settings_env(tmp_path, db_url)
    skus = f"{seeded.sku.id},{seeded.big.id}"
    procs = [spawn("tests.e2e.buyer", str(n), str(ATTEMPTS // PROCESSES), str(CONCURRENCY), skus, env=env)
             for n in range(PROCESSES)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))

    bad, totals = await db_checks.run(db_url)
    assert {name: rows for name, rows in bad.items() if rows} == {}
    assert totals["uses_total"] == 1_000
    assert totals["uses_left"] == 0, "demand exceeded supply: every use must be sold"
    assert totals["items"] == 1_000
    assert sum(r["paid"] for r in results) == totals["paid_orders"]
    assert sum(r["other"] for r in results) == 0
    assert sum(r["out_of_stock"] for r in results) > 0
