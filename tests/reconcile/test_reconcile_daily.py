"""The daily reconciliation: one process at a time (a store lease), each source's yesterday once (a done key), not
before the other side's records are ready, and a source that could not be read is tried again on the next tick."""

from __future__ import annotations

import asyncio
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from bot.reconcile_cli import HttpBotApi
from fulfillment.reconcile import Reconciliation
from fulfillment.reconcile_stars import StarTransactions
from tests.reconcile.test_reconcile_stars import _today

SHANGHAI = ZoneInfo("Asia/Shanghai")


def _at(hour: int):
    """A clock at `hour` o'clock of tomorrow in Shanghai: today's transactions are yesterday's."""
    return lambda: datetime.combine(_today() + timedelta(days=1), time(hour), SHANGHAI)


def _process(store, api, hour: int) -> Reconciliation:
    r = Reconciliation(store, "Asia/Shanghai", clock=_at(hour))
    r.add("telegram", StarTransactions(store, api).collect, ready_hour=2)
    return r


def _pages(fake) -> int:  # noqa: F811
    return sum(1 for m, _ in fake.calls if m == "getStarTransactions")


async def test_one_process_reconciles_each_day_once_when_ready(store, fake):  # noqa: F811
    api = HttpBotApi(fake.base_url, fake.token)
    try:
        fake.successful_payment(7, "NOT-OURS", 70, "ch-unknown", lost=True)
        assert await _process(store, api, 1).daily(["telegram"]) == []  # before the ready hour: nothing asked
        assert _pages(fake) == 0
        fake.fail_next("getStarTransactions", 502, "Bad Gateway")
        assert await _process(store, api, 3).daily(["telegram"]) == []  # unreadable: not done, tried again
        one, two = _process(store, api, 3), _process(store, api, 3)
        done = await asyncio.gather(one.daily(["telegram"]), two.daily(["telegram"]))
        assert sorted(len(d) for d in done) == [0, 1]  # the lease: one process ran it
        assert [d.reference for d in await store.discrepancies(True, 10)] == ["ch-unknown"]
        asked = _pages(fake)
        assert await _process(store, api, 5).daily(["telegram"]) == []  # the day is done
        assert _pages(fake) == asked
    finally:
        await api.aclose()
