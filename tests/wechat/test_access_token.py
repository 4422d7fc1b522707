"""One access token for every process: shared through the store, one fetch per refresh, refreshed on 40001."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import httpx

from handlers.wechat.access_token import SharedAccessToken
from handlers.wechat.api import WeChatApi
from tests.fakes.wechat_api import APP_ID, APP_SECRET


def _api(store, fake, http):
    return WeChatApi(store, http, fake.base_url, APP_ID, APP_SECRET)


async def test_two_processes_share_one_token_and_a_40001_storm_fetches_once(store, fake):
    """Two WeChatApi objects (two processes) on one store: 20 concurrent sends after the token died."""
    async with httpx.AsyncClient() as http:
        first, second = _api(store, fake, http), _api(store, fake, http)
        await first.send_text("o1", "warm up")
        await second.send_text("o2", "no second fetch")
        assert fake.token_fetches == 1
        fake.expire_tokens()  # every send now gets 40001 until someone refreshes
        fake.token_delay_s = 0.2  # the refresh overlaps all the others
        await asyncio.gather(*(api.send_text(f"u{i}", "after expiry") for i in range(10) for api in (first, second)))
    assert fake.token_fetches == 2
    assert len(fake.sent) == 22


async def test_token_is_refreshed_before_it_expires_by_one_holder(store, fake):
    now = [datetime.now(UTC)]
    fetched = []

    async def fetch():
        fetched.append(now[0])
        return f"T{len(fetched)}", 7200

    a = SharedAccessToken(store, APP_ID, fetch, clock=lambda: now[0])
    b = SharedAccessToken(store, APP_ID, fetch, clock=lambda: now[0])
    assert await a.get() == "T1"
    assert await b.get() == "T1"
    now[0] += timedelta(seconds=7200 - 300)  # inside the last 10 minutes
    during = await asyncio.gather(a.get(), b.get())
    # the lease holder fetched T2; the other got T2 or, if the refresh was still running, the old T1 (still
    # valid: WeChat honours it five more minutes) — never a fetch of its own
    assert "T2" in during
    assert set(during) <= {"T1", "T2"}
    assert [await a.get(), await b.get()] == ["T2", "T2"]
    assert len(fetched) == 2


async def test_a_process_waits_for_the_lease_holder_and_reads_its_token(store, fake):
    started, release = asyncio.Event(), asyncio.Event()

    async def slow_fetch():
        started.set()
        await release.wait()
        return "FRESH", 7200

    async def never():
        raise AssertionError("only the lease holder fetches")

    holder = SharedAccessToken(store, APP_ID, slow_fetch)
    waiter = SharedAccessToken(store, APP_ID, never, poll_s=0.01)
    first = asyncio.create_task(holder.get())
    await started.wait()  # the holder has the lease and is fetching
    second = asyncio.create_task(waiter.get())
    await asyncio.sleep(0.05)
    assert not second.done()
    release.set()
    assert await asyncio.gather(first, second) == ["FRESH", "FRESH"]


async def test_token_is_stored_with_its_expiry_and_never_logged(store, fake, caplog):
    caplog.set_level("DEBUG")
    async with httpx.AsyncClient() as http:
        api = _api(store, fake, http)
        await api.send_text("o1", "hi")
    raw = await store.kv_get(f"wechat:access_token:{APP_ID}", datetime.now(UTC))
    token = json.loads(raw)["token"]
    assert token in fake.valid_tokens
    assert await store.kv_get(f"wechat:access_token:{APP_ID}", datetime.now(UTC) + timedelta(hours=3)) is None
    assert token not in caplog.text
    assert APP_SECRET not in caplog.text
