"""The documented PostgreSQL backup (README, "Backups"): `pg_dump --format=custom` of the shop's schema while the
shop sells, and `pg_restore` into a fresh schema: one snapshot of the shop (invariants hold, every order's codes are
the source's), every code decrypts with the key file, and the restored shop sells. `kamibot backup` itself refuses
PostgreSQL (tests/bot/test_backup.py).

The source schema is renamed after the dump and the dump restored under the shop's schema name into the same test
database: a throwaway database would do as well, but its DROP DATABASE forces a checkpoint (12-26 s on the shared
test machines), and the dump holds nothing outside the schema (no extensions, no objects in other schemas)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from bot.composition import Shop, build_shop
from bot.settings import Settings
from fulfillment.orders import STATE_GROUPS
from storage.postgres import PostgresStore
from tests.conftest import PG_DSN, drop_pg_schema, pg_schema_or_skip
from tests.e2e import backup_checks as bc
from tests.storage.seed import make_shop


@pytest.fixture
async def shop_schema() -> AsyncIterator[str]:
    """The shop's schema in the test database (fails under KAMIBOT_REQUIRE_SERVICES=1 without PostgreSQL); the
    source moves to `<schema>_was` when the dump is restored under the shop's name."""
    schema = await pg_schema_or_skip()
    yield schema
    await drop_pg_schema(schema)
    await drop_pg_schema(schema + "_was")


async def _open(dsn: str, schema: str, data_dir: Path) -> Shop:
    store = await PostgresStore(dsn, schema=schema, states=STATE_GROUPS).open()
    await store.migrate()
    return await build_shop(Settings(data_dir=data_dir, database_url=dsn), store=store)


async def _tool(*args: str) -> None:
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, (args[0], err.decode()[-2000:])


async def test_pg_dump_mid_burst_restores_into_a_fresh_schema_that_decrypts_and_sells(shop_schema, tmp_path):
    # given a PostgreSQL shop selling continuously
    shop = await _open(PG_DSN, shop_schema, tmp_path / "shop")
    inbox = bc.Inbox()
    shop.channels["console"] = inbox
    seeded = await make_shop(shop.store, codes=3_000, vault=shop.vault)
    burst = bc.Burst(shop, [seeded.sku.id, seeded.big.id])
    burst.start()
    dump = tmp_path / "shop.dump"
    try:
        await burst.until_paid(20)
        # when the merchant dumps it as the README says
        await _tool("pg_dump", "--format=custom", f"--schema={shop_schema}", f"--file={dump}", PG_DSN)
        paid_after = burst.paid
        await burst.until_paid(paid_after + 20)
    finally:
        await burst.finish()
    await shop.close()

    # and restores the dump where no shop is (the source moved aside)
    source = shop_schema + "_was"
    admin = await asyncpg.connect(PG_DSN)
    await admin.execute(f"ALTER SCHEMA {shop_schema} RENAME TO {source}")
    await admin.close()
    await _tool("pg_restore", "--exit-on-error", "--no-owner", f"--dbname={PG_DSN}", str(dump))

    # then the copy is one snapshot: invariants hold, and every order in it has the source's codes
    copy, now = await bc.read_pg(PG_DSN, shop_schema), await bc.read_pg(PG_DSN, source)
    assert copy.bad == {}
    assert 0 < copy.summary["items"] < now.summary["items"], "the dump was not taken mid-burst"
    assert all(now.items[ref] == items for ref, items in copy.items.items())
    assert set(copy.ledger) <= set(now.ledger)

    # and with the key file every code decrypts, delivered orders showing the codes their buyers got
    restored = await _open(PG_DSN, shop_schema, tmp_path / "shop")
    try:
        plain = {row.id: restored.vault.open(row) for row in copy.codes}
        assert len(plain) == copy.summary["codes"]
        delivered = [ref for ref in copy.items if ref in inbox.codes]
        assert delivered
        for ref in delivered:
            assert sorted(plain[c] for c, _ in copy.items[ref]) == sorted(inbox.codes[ref])
        # and the restored shop sells
        restored_inbox = bc.Inbox()
        restored.channels["console"] = restored_inbox
        again = bc.Burst(restored, [seeded.sku.id], customers=1)
        again.start()
        await again.until_paid(3)
        await again.finish()
    finally:
        await restored.close()
    new = {c for ref, codes in restored_inbox.codes.items() if ref not in copy.items for c in codes}
    sold_in_copy = {plain[c] for items in copy.items.values() for c, _ in items}
    assert new
    assert not new & sold_in_copy
    assert (await bc.read_pg(PG_DSN, shop_schema)).bad == {}
