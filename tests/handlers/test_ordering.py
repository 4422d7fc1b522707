"""One user's work in arrival order, other users' work side by side (handlers/ordering.py)."""

from __future__ import annotations

import asyncio

from handlers.ordering import InOrder


async def test_one_keys_work_runs_in_arrival_order_and_others_do_not_wait():
    order: InOrder[str] = InOrder()
    release = asyncio.Event()
    done: list[str] = []

    async def work(key: str, name: str, block: bool = False) -> None:
        async with order.turn(key):
            if block:
                await release.wait()
            done.append(name)

    first = asyncio.create_task(work("a", "a1", block=True))
    await asyncio.sleep(0)
    rest = [asyncio.create_task(work("a", f"a{n}")) for n in range(2, 6)]
    other = asyncio.create_task(work("b", "b1"))
    await other  # b does not wait for a's blocked turn
    assert done == ["b1"]
    assert order.pending("a") == 5
    release.set()
    await asyncio.gather(first, *rest)
    assert done == ["b1", "a1", "a2", "a3", "a4", "a5"]
    assert len(order) == 0  # nothing kept for users with nothing running


async def test_a_failing_turn_passes_the_turn_on():
    order: InOrder[int] = InOrder()

    async def fail() -> None:
        async with order.turn(1):
            raise RuntimeError("boom")

    results = await asyncio.gather(fail(), fail(), return_exceptions=True)
    assert [type(r) for r in results] == [RuntimeError, RuntimeError]
    async with order.turn(1):
        pass
    assert len(order) == 0
