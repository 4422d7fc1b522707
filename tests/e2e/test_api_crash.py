"""SIGKILL between the wallet debit and the answer (issue 15): the order and its debit are committed, the
Idempotency-Key still pending; the client's retry (same key, same body, freshly signed) after the lease gets the
same order, never a second one, and the wallet is debited once."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import httpx
from starlette.applications import Starlette

from bot.api import build_api
from bot.composition import build_shop
from bot.settings import Settings
from fulfillment.api_clients import ApiKeys
from fulfillment.api_orders import API_ORDER_PLACED
from fulfillment.api_signing import IDEMPOTENCY_HEADER, Signer
from storage.records import Price
from tests.e2e.procs import settings_env, spawn
from tests.storage.seed import make_shop

PRICE = 700


async def test_killed_after_the_debit_the_retry_returns_the_same_order(tmp_path: Path, db_url: str) -> None:
    # given a funded client
    env = {**settings_env(tmp_path, db_url), "KAMIBOT_API__IDEMPOTENCY_LEASE_S": "0.5"}
    settings = Settings(data_dir=tmp_path, database_url=db_url, api={"idempotency_lease_s": 0.5})
    shop = await build_shop(settings)
    seeded = await make_shop(shop.store, codes=5, vault=shop.vault)
    await shop.store.set_price(Price(seeded.sku.id, "api", "CNY", PRICE))
    keys = ApiKeys(shop.store, shop.vault)
    key = await keys.create("shop-b", ["orders:write", "orders:read"])
    await keys.top_up(key.client.key_id, 5 * PRICE, "CNY", "seed")
    await shop.close()
    request = {"body": {"client_order_no": "A-1", "sku": seeded.sku.slug, "quantity": 2}, "idem": "key-1"}
    # when the process placing the order dies after the commit, before answering
    proc = spawn("tests.e2e.api_crash_worker", API_ORDER_PLACED, json.dumps(request),
                 env={**env, "KB_TEST_API_KEY": key.client.key_id, "KB_TEST_API_SECRET": key.secret})
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, err[-2000:]
    # then the client's retry after the dead holder's lease (0.5 s here) answers the same order
    await asyncio.sleep(0.6)
    shop = await build_shop(settings)
    app = Starlette(routes=build_api(shop).routes())
    signer = Signer(key.client.key_id, key.secret)
    body = json.dumps(request["body"]).encode()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        answers = []
        for _ in range(2):
            headers = {**signer.headers("POST", "/api/v1/orders", "", body), IDEMPOTENCY_HEADER: "key-1"}
            answers.append(await http.post("/api/v1/orders", content=body, headers=headers))
    orders = await shop.store.orders_for_user("api", f"client:{key.client.id}", 10, 0)
    lines = await shop.store.wallet_lines(key.client.id, 10)
    balances = await shop.store.wallet_balances(key.client.id)
    await shop.close()
    assert [a.status_code for a in answers] == [201, 201]
    assert answers[0].content == answers[1].content
    assert len(orders) == 1
    assert answers[0].json()["order_no"] == orders[0].ref
    assert len(answers[0].json()["codes"]) == 2
    assert [ln.kind for ln in lines] == ["order", "topup"]
    assert balances == {"CNY": 3 * PRICE}
