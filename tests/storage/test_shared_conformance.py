"""Shared-state conformance: claim-once keys, kv, leases (storage/protocols/shared.py),
run against every backend (SQLite and PostgreSQL) via the `store` fixture."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from storage import events
from storage.records import OrderState
from tests.storage.seed import NOW

S = OrderState
REFUND = events.refunded(reason="merchant")


async def test_claim_once_is_first_wins_until_expiry(store):
    later = NOW + timedelta(minutes=5)
    assert await store.claim_once("wechat.msg", "m1", later, NOW)
    assert not await store.claim_once("wechat.msg", "m1", later, NOW)  # the retry
    assert await store.claim_once("wechat.evt", "m1", later, NOW)  # scopes are separate
    results = await asyncio.gather(*(store.claim_once("nonce", "n", later, NOW) for _ in range(8)))
    assert sorted(results) == [False] * 7 + [True]
    # once expired, the key can be claimed again (and pruning removes only the expired)
    assert await store.claim_once("wechat.msg", "m1", later + timedelta(minutes=5), later)
    assert await store.prune_once_keys(later + timedelta(seconds=1)) == 2


async def test_kv_values_expire_and_leases_have_one_holder(store):
    soon, later = NOW + timedelta(seconds=30), NOW + timedelta(minutes=5)
    await store.kv_put("wechat.token", "t1", soon)
    assert await store.kv_get("wechat.token", NOW) == "t1"
    assert await store.kv_get("wechat.token", later) is None
    await store.kv_put("wechat.token", "t2", None)
    assert await store.kv_get("wechat.token", later) == "t2"
    assert await store.kv_get("missing", NOW) is None
    assert await store.try_lease("refresh", "p1", soon, NOW)
    assert not await store.try_lease("refresh", "p2", soon, NOW)
    assert await store.try_lease("refresh", "p1", later, NOW)  # the holder extends
    assert await store.try_lease("refresh", "p2", later + timedelta(minutes=1), later)  # expired: taken over
    await store.release_lease("refresh", "p1")  # not the holder: nothing happens
    assert not await store.try_lease("refresh", "p1", later, NOW + timedelta(minutes=5, seconds=30))
    await store.release_lease("refresh", "p2")
    assert await store.try_lease("refresh", "p1", later, NOW)


async def test_live_leases_are_counted_by_name_prefix(store):
    soon, later = NOW + timedelta(seconds=30), NOW + timedelta(minutes=5)
    assert await store.count_leases("tg.sender:", NOW) == 0
    assert await store.try_lease("tg.sender:a", "a", later, NOW)
    assert await store.try_lease("tg.sender:b", "b", soon, NOW)
    assert await store.try_lease("tg.senderX", "x", later, NOW)  # another prefix
    assert await store.try_lease("job:tg.sender:c", "c", later, NOW)  # the prefix only at the start
    assert await store.count_leases("tg.sender:", NOW) == 2
    assert await store.count_leases("tg.sender:", soon) == 1  # b expired
    await store.release_lease("tg.sender:a", "a")
    assert await store.count_leases("tg.sender:", NOW) == 1
    assert await store.count_leases("tg_sender:", NOW) == 0  # no wildcard: "_" is a plain character
