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

    schema = await pg_schema_or_skip()
    pg = await PostgresStore(PG_DSN, schema=schema, states=STATE_GROUPS).open()
    await pg.migrate()
    yield pg
    await pg.close()
    await drop_pg_schema(schema)
