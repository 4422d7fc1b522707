"""A periodic job of several instances ticks once per period in total (bot.jobs.once_per_period), on SQLite and
PostgreSQL: three instances' loops over one shared store, each ticking every period."""

from __future__ import annotations

import asyncio

from bot.jobs import JobStatus, _every, once_per_period

PERIOD_S, RUN_S = 0.3, 1.5


async def test_three_instances_tick_a_periodic_job_once_per_period(store):
    done: list[str] = []

    def job(instance: str):
        async def tick() -> int:
            done.append(instance)
            return 0

        return once_per_period(store, instance, ("price_sync", PERIOD_S, tick))

    stop = asyncio.Event()
    loops = [asyncio.create_task(_every(*job(f"instance-{n}"), stop, JobStatus())) for n in range(3)]
    await asyncio.sleep(RUN_S)
    stop.set()
    await asyncio.gather(*loops)
    # unguarded, 3 instances × 5 periods would be 15 ticks; the lease (0.9 of the period) allows one a period
    assert 2 <= len(done) <= RUN_S / (0.9 * PERIOD_S) + 1
    assert len(done) < 3 * (RUN_S / PERIOD_S) / 2


async def test_a_busy_job_keeps_ticking_where_it_holds_the_period(store):
    work = {"instance-0": [5, 4, 3, 0], "instance-1": [5, 4, 3, 0]}
    done: list[str] = []

    def job(instance: str):
        async def tick() -> int:
            done.append(instance)
            return work[instance].pop(0) if work[instance] else 0

        return once_per_period(store, instance, ("procurement_resolve", 60.0, tick))

    stop = asyncio.Event()
    loops = [asyncio.create_task(_every(*job(f"instance-{n}"), stop, JobStatus())) for n in range(2)]
    await asyncio.sleep(0.5)
    stop.set()
    await asyncio.gather(*loops)
    assert len(done) == 4  # four ticks, three of them busy
    assert len(set(done)) == 1  # all by the holder of the period
