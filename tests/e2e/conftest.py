"""Backends for multi-process tests: a SQLite file, or a fresh PostgreSQL database on 127.0.0.1."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import PG_DSN, REQUIRE_SERVICES, _pg_available
from tests.fakes.telegram_bot_api import FakeTelegram


@pytest.fixture(params=["sqlite", "postgres"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'shop.db'}"
        return
    import asyncpg

    if not await _pg_available():
        if REQUIRE_SERVICES:
            pytest.fail("PostgreSQL required (KAMIBOT_REQUIRE_SERVICES=1) but not reachable")
        pytest.skip("PostgreSQL not reachable")
    name = "kbt_" + secrets.token_hex(6)
    admin = await asyncpg.connect(PG_DSN)
    await admin.execute(f"CREATE DATABASE {name}")
    await admin.close()
    yield PG_DSN.rsplit("/", 1)[0] + "/" + name
    admin = await asyncpg.connect(PG_DSN)
    await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    await admin.close()


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    """The fake Bot API server on 127.0.0.1 (tests/fakes/telegram_bot_api.py), stopped after the test."""
    server = FakeTelegram()
    await server.start()
    yield server
    await server.stop()
