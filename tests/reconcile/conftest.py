"""Reconciliation test benches: the WeChat Pay bench (fake WeChat Pay server, our app, a real store on both
backends) from tests/wechatpay, and a Reconciliation whose clock is a day ahead, so today's trades are yesterday's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fulfillment.reconcile import Reconciliation
from fulfillment.reconcile_wechatpay import BEIJING_TZ, WeChatPayBills
from tests.e2e.conftest import fake  # noqa: F401 - the fake Bot API fixture (Stars reconciliation)
from tests.wechatpay.conftest import Bench, Keys, bench, keys  # noqa: F401 - `keys` is a fixture used here

TOMORROW = timedelta(days=1)


def tomorrow() -> datetime:
    return datetime.now(UTC) + TOMORROW


@pytest.fixture
async def env(store: object, tmp_path: Path, keys: Keys) -> AsyncIterator[Bench]:  # noqa: F811
    async with bench(store, tmp_path, keys) as b:
        recon = Reconciliation(b.shop.store, clock=tomorrow)
        recon.add("wechatpay", WeChatPayBills(b.shop.store, b.wx.client).collect, BEIJING_TZ, 10)
        b.extra["recon"] = recon
        yield b
