"""Shared fixtures: real SQLite files and real PostgreSQL schemas (127.0.0.1:5432, database test)."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fulfillment.orders import STATE_GROUPS

PG_DSN = os.environ.get("KAMIBOT_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("KAMIBOT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REQUIRE_SERVICES = os.environ.get("KAMIBOT_REQUIRE_SERVICES") == "1"
# every shop the tests build or spawn opens at most 6 PostgreSQL connections: workers running 3- and 4-process
# tests at once stay under the server's max_connections (100)
os.environ.setdefault("KAMIBOT_DATABASE_POOL_SIZE", "6")


async def _pg_available() -> bool:
    import asyncpg

    try:
        conn = await asyncpg.connect(PG_DSN, timeout=3)
    except (OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


async def pg_schema_or_skip() -> str:
    """A fresh schema for one test; missing PostgreSQL fails under KAMIBOT_REQUIRE_SERVICES=1."""
    import asyncpg

    if not await _pg_available():
        if REQUIRE_SERVICES:
            pytest.fail(f"PostgreSQL required (KAMIBOT_REQUIRE_SERVICES=1) but not reachable at {PG_DSN}")
        pytest.skip("PostgreSQL not reachable on 127.0.0.1:5432")
    schema = "kbt_" + secrets.token_hex(6)
    conn = await asyncpg.connect(PG_DSN)
    await conn.execute(f"CREATE SCHEMA {schema}")
    await conn.close()
    return schema


async def drop_pg_schema(schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_DSN)
    await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    await conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[object]:
    """A migrated, empty Store of each backend: the one conformance suite runs against both."""
    if request.param == "sqlite":
        from storage.sqlite import SqliteStore

        s = await SqliteStore(tmp_path / "shop.db", states=STATE_GROUPS).open()
        await s.migrate()
        yield s
        await s.close()
        return
    from storage.postgres import PostgresStore

    schema = await take_pg_schema()
    pg = await PostgresStore(PG_DSN, schema=schema, states=STATE_GROUPS).open()
    await pg.migrate()  # a reused schema is migrated already: one query
    yield pg
    await pg.close()
    await give_back_pg_schema(schema)


async def take_pg_schema() -> str:
    """An empty schema for one test: an emptied, migrated one of this worker's if there is one, else a fresh one
    (migrated by whoever opens the store). Give it back with give_back_pg_schema once every store on it closed."""
    return _CLEAN_SCHEMAS.pop() if _CLEAN_SCHEMAS else await pg_schema_or_skip()


async def give_back_pg_schema(schema: str) -> None:
    if await _emptied(schema):
        _CLEAN_SCHEMAS.append(schema)
    else:
        await drop_pg_schema(schema)


#: migrated PostgreSQL schemas emptied after their test, for this worker's next `store` (migrating a fresh schema
#: costs about a second of server time; emptying one, 50 ms). Dropped when the session ends.
_CLEAN_SCHEMAS: list[str] = []


async def _emptied(schema: str) -> bool:
    """Every table but schema_migrations emptied and every sequence restarted, as if just migrated; False when that
    failed or the schema is not as migration left it (a test changed its structure): the caller drops it."""
    import asyncpg

    from storage.migrations import migrations

    conn = await asyncpg.connect(PG_DSN)
    try:
        latest = migrations("postgres")[-1][0]
        if await conn.fetchval(f"SELECT MAX(version) FROM {schema}.schema_migrations") != latest:
            return False
        tables = [r[0] for r in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = $1 AND tablename <> 'schema_migrations'", schema)]
        sequences = [r[0] for r in await conn.fetch(
            "SELECT sequencename FROM pg_sequences WHERE schemaname = $1", schema)]
        # replica role: foreign keys are not checked, so the order of the deletes does not matter
        await conn.execute("SET lock_timeout = '5s'; SET session_replication_role = replica;"
                           + "".join(f"DELETE FROM {schema}.{t};" for t in tables)
                           + "".join(f"ALTER SEQUENCE {schema}.{q} RESTART;" for q in sequences))
        return True
    except asyncpg.PostgresError:
        return False
    finally:
        await conn.close()


def pytest_sessionfinish(session: pytest.Session) -> None:
    import asyncio

    async def drop_all() -> None:
        while _CLEAN_SCHEMAS:
            await drop_pg_schema(_CLEAN_SCHEMAS.pop())

    if _CLEAN_SCHEMAS:
        asyncio.run(drop_all())
