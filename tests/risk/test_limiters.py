"""One suite for every Limiter backend (in-process and Redis): the same arithmetic, atomic batches."""

from __future__ import annotations

import asyncio

import pytest

from risk.limiters import Bucket, Count, Distinct

T0 = 1_800_000_000.0  # a fixed clock: whole hours, days and minutes start here


async def test_count_allows_up_to_the_limit_and_refused_attempts_count_nothing(limiter):
    op = Count("v:user:1", 3600, 1, 3)
    outcomes = [await limiter.apply([op], T0 + i) for i in range(5)]
    assert [o.allowed for o in outcomes] == [True, True, True, False, False]
    assert [o.values[0] for o in outcomes] == [1, 2, 3, 4, 4]  # refused attempts were not counted
    assert [o.committed for o in outcomes] == [True, True, True, False, False]


async def test_amounts_sum_and_a_multi_op_check_is_all_or_nothing(limiter):
    amount = Count("a:user:1", 86_400, 6000, 10_000)
    orders = Count("v:user:1", 3600, 1, None)
    first = await limiter.apply([orders, amount], T0)
    second = await limiter.apply([orders, amount], T0 + 1)  # 12,000 > 10,000: nothing counted
    assert first.values == (1, 6000)
    assert second.exceeded == (False, True)
    assert not second.committed
    third = await limiter.apply([orders, Count("a:user:1", 86_400, 4000, 10_000)], T0 + 2)
    assert third.values == (2, 10_000)
    assert third.allowed


async def test_distinct_members_count_once_per_window(limiter):
    outcomes = [await limiter.apply([Distinct("d:ip:1.2.3.4", f"user{u}", 86_400, 2)], T0 + i)
                for i, u in enumerate([1, 1, 2, 1, 3, 2])]
    assert [o.values[0] for o in outcomes] == [1, 1, 2, 2, 3, 2]
    assert [o.allowed for o in outcomes] == [True, True, True, True, False, True]
    # the next day starts empty
    assert (await limiter.apply([Distinct("d:ip:1.2.3.4", "user3", 86_400, 2)], T0 + 86_400)).values == (1,)


async def test_token_bucket_bursts_then_refills_at_its_rate(limiter):
    op = Bucket("chat:tg:1", rate=1.0, burst=3)
    burst = [(await limiter.apply([op], T0)).allowed for _ in range(4)]
    assert burst == [True, True, True, False]
    assert (await limiter.apply([op], T0 + 1.0)).allowed  # one token back after one second
    assert not (await limiter.apply([op], T0 + 1.0)).allowed
    assert [(await limiter.apply([op], T0 + 10)).allowed for _ in range(4)] == [True, True, True, False]


async def test_sliding_window_forgets_after_two_windows(limiter):
    op = Count("v:sku:9", 60, 1, 2)
    assert (await limiter.apply([op], T0)).allowed
    assert (await limiter.apply([op], T0 + 1)).allowed
    assert not (await limiter.apply([op], T0 + 2)).allowed
    assert not (await limiter.apply([op], T0 + 61)).allowed  # the previous minute still weighs ~all of it
    assert (await limiter.apply([op], T0 + 121)).allowed


async def test_peek_does_not_count(limiter):
    op = Count("v:user:peek", 3600, 1, 1)
    assert (await limiter.apply([op], T0, commit=False)).values == (1,)
    assert (await limiter.apply([op], T0, commit=False)).values == (1,)
    assert (await limiter.apply([op], T0)).committed


async def test_concurrent_checks_never_pass_more_than_the_limit(limiter):
    op = Count("v:user:race", 3600, 1, 50)
    outcomes = await asyncio.gather(*(limiter.apply([op], T0) for _ in range(200)))
    assert sum(o.allowed for o in outcomes) == 50


@pytest.mark.parametrize("op", [
    Count("", 60), Count("k", 0), Count("k", 60, -1), Count("k", 60, 1, -1),
    Bucket("k", 0, 1), Bucket("k", 1, 0), Distinct("k", "m", -5),
])
async def test_bad_operations_are_refused(limiter, op):
    with pytest.raises(ValueError, match="must"):
        await limiter.apply([op], T0)


async def test_a_rule_plan_counts_like_the_same_operations(limiter):
    from risk.limiters import Plan, PlanRule

    plan = Plan((PlanRule("v", "v:orders", "user", "", 3600, 2), PlanRule("a", "a:spend", "user", "", 86_400, 900,
                                                                           "CNY"),
                 PlanRule("d", "d:farm", "ip", "user", 86_400, 1), PlanRule("v", "v:fp", "fp", "", 3600, None)))
    first = await limiter.apply_plan(plan, {"user": "u1", "ip": "1.2.3.4", "fp": ""}, 500, "CNY", T0)
    assert first.values == (1, 500, 1, -1)  # no fingerprint: that rule does not apply
    other_currency = await limiter.apply_plan(plan, {"user": "u1", "ip": "1.2.3.4"}, 500, "XTR", T0)
    assert other_currency.values == (2, -1, 1, -1)
    over = await limiter.apply_plan(plan, {"user": "u1", "ip": "1.2.3.4"}, 500, "CNY", T0)
    assert over.exceeded == (True, True, False, False)
    assert not over.committed  # refused: nothing counted
    farm = await limiter.apply_plan(plan, {"user": "u2", "ip": "1.2.3.4"}, 10, "CNY", T0)
    assert farm.exceeded == (False, False, True, False)
    with pytest.raises(ValueError, match="printable"):
        await limiter.apply_plan(plan, {"user": "u\n1"}, 1, "CNY", T0)
