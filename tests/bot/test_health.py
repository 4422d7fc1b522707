"""/healthz says the process is alive; /readyz says whether it can serve: database reachable, migrations current,
Redis answering when configured, no stale job (issue 17, observability). On SQLite and PostgreSQL, real Redis."""

from __future__ import annotations

import sqlite3
import time

import httpx
import pytest

from bot.composition import build_shop
from bot.jobs import JobStatus
from bot.server import create_app
from bot.settings import Settings
from tests.conftest import PG_DSN, REDIS_URL
from tests.fakes.loopback import free_port
from tests.risk.conftest import redis_or_skip


def _settings(tmp_path, store, **extra) -> Settings:
    postgres = type(store).__name__ == "PostgresStore"
    url = PG_DSN if postgres else f"sqlite:///{tmp_path / 'shop.db'}"
    return Settings(data_dir=tmp_path, database_url=url, risk={"enabled": False}, **extra)


async def _get(app, *paths: str) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://kamibot") as client:
        return [await client.get(p) for p in paths]


async def test_ready_with_database_migrations_redis_and_fresh_jobs(tmp_path, store):
    await redis_or_skip()
    shop = await build_shop(_settings(tmp_path, store, redis_url=REDIS_URL), store=store)
    jobs = JobStatus(intervals={"delivery": 0.2}, last_ok={"delivery": time.monotonic()})
    ready, alive = await _get(create_app(shop, jobs), "/readyz", "/healthz")
    await shop.redis.aclose()
    assert ready.status_code == 200, ready.json()
    assert ready.json() == {"status": "ready", "checks": {"database": "ok", "migrations": "ok", "redis": "ok",
                                                          "jobs": "ok"}}
    assert alive.status_code == 200


async def test_redis_down_is_not_ready_but_alive(tmp_path, store):
    shop = await build_shop(_settings(tmp_path, store, redis_url=f"redis://127.0.0.1:{free_port()}/0"), store=store)
    ready, alive = await _get(create_app(shop, JobStatus()), "/readyz", "/healthz")
    await shop.redis.aclose()
    assert ready.status_code == 503
    assert ready.json()["checks"]["redis"].startswith("unreachable (")
    assert ready.json()["checks"]["database"] == "ok"
    assert alive.status_code == 200


async def test_database_down_is_not_ready_but_alive(tmp_path, store):
    shop = await build_shop(_settings(tmp_path, store), store=store)
    app = create_app(shop, JobStatus())
    await store.close()  # the database is gone
    ready, alive = await _get(app, "/readyz", "/healthz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"].startswith("unreachable (")
    assert alive.status_code == 200
    assert alive.json()["database"].startswith("unreachable (")


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
async def test_a_schema_behind_the_code_is_not_ready(tmp_path, store):
    shop = await build_shop(_settings(tmp_path, store), store=store)
    with sqlite3.connect(tmp_path / "shop.db") as db:  # as a database restored from an older backup would be
        db.execute("DELETE FROM schema_migrations WHERE version = (SELECT MAX(version) FROM schema_migrations)")
    (ready,) = await _get(create_app(shop, JobStatus()), "/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["migrations"].startswith("behind: schema ")
