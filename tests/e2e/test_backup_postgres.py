"""The documented PostgreSQL backup (README, "Backups"): `pg_dump --format=custom` while the shop sells, and
`pg_restore` into a fresh database: one snapshot of the shop (invariants hold, every order's codes are the source's),
every code decrypts with the key file, and the restored shop sells. `kamibot backup` itself refuses PostgreSQL
(tests/bot/test_backup.py)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest

from bot.composition import build_shop
from bot.settings import Settings
from tests.conftest import PG_DSN, REQUIRE_SERVICES, _pg_available
from tests.e2e import backup_checks as bc
from tests.storage.seed import make_shop


@pytest.fixture
async def databases() -> AsyncIterator[Callable[[], Awaitable[str]]]:
    """Throwaway databases on the test server (CREATE DATABASE), dropped at the end."""
    if not await _pg_available():
        if REQUIRE_SERVICES:
            pytest.fail("PostgreSQL required (KAMIBOT_REQUIRE_SERVICES=1) but not reachable")
        pytest.skip("PostgreSQL not reachable")
    made: list[str] = []

    async def new() -> str:
        name = "kbt_" + secrets.token_hex(6)
        admin = await asyncpg.connect(PG_DSN)
        await admin.execute(f"CREATE DATABASE {name}")
        await admin.close()
        made.append(name)
        return PG_DSN.rsplit("/", 1)[0] + "/" + name

    yield new
    admin = await asyncpg.connect(PG_DSN)
    for name in made:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    await admin.close()


async def _tool(*args: str) -> None:
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, (args[0], err.decode()[-2000:])


async def test_pg_dump_mid_burst_restores_into_a_fresh_database_that_decrypts_and_sells(databases, tmp_path):
    # given a PostgreSQL shop selling continuously
    source = await databases()
    shop = await build_shop(Settings(data_dir=tmp_path / "shop", database_url=source))
    inbox = bc.Inbox()
    shop.channels["console"] = inbox
    seeded = await make_shop(shop.store, codes=2000, vault=shop.vault)
    burst = bc.Burst(shop, [seeded.sku.id, seeded.big.id])
    burst.start()
    dump = tmp_path / "shop.dump"
    try:
        await burst.until_paid(20)
        # when the merchant dumps it as the README says
        await _tool("pg_dump", "--format=custom", f"--file={dump}", source)
        paid_after = burst.paid
        await burst.until_paid(paid_after + 20)
    finally:
        await burst.finish()
    await shop.close()

    # and restores the dump into a fresh database
    fresh = await databases()
    await _tool("pg_restore", "--exit-on-error", "--no-owner", f"--dbname={fresh}", str(dump))

    # then the copy is one snapshot: invariants hold, and every order in it has the source's codes
    copy, now = await bc.read_pg(fresh), await bc.read_pg(source)
    assert copy.bad == {}
    assert 0 < copy.summary["items"] < now.summary["items"], "the dump was not taken mid-burst"
    assert all(now.items[ref] == items for ref, items in copy.items.items())
    assert set(copy.ledger) <= set(now.ledger)

    # and with the key file every code decrypts, delivered orders showing the codes their buyers got
    restored = await build_shop(Settings(data_dir=tmp_path / "shop", database_url=fresh))
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
    assert (await bc.read_pg(fresh)).bad == {}
