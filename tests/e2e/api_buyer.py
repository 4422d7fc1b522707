"""An API client process for the cross-process order-API test: CONCURRENCY signed clients in one process send
every order number of a shared list (in this process's own order) to the order API, each a freshly signed
request; the other processes send the same numbers at the same time.

Run as `python -m tests.e2e.api_buyer PROC_NO ORDERS CONCURRENCY SKU_SLUG` with KAMIBOT_* settings and
KB_TEST_API_KEY / KB_TEST_API_SECRET in the env. Prints one JSON line of counts per answer code.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
from collections import Counter

import httpx
from starlette.applications import Starlette

from bot.api import build_api
from bot.composition import build_shop
from bot.settings import Settings
from fulfillment.api_signing import Signer


async def main(proc: int, orders: int, concurrency: int, sku: str) -> dict[str, int]:
    shop = await build_shop(Settings())
    app = Starlette(routes=build_api(shop).routes())
    signer = Signer(os.environ["KB_TEST_API_KEY"], os.environ["KB_TEST_API_SECRET"])
    numbers = [f"O-{i}" for i in range(orders)]
    random.Random(proc).shuffle(numbers)
    queue: asyncio.Queue[str] = asyncio.Queue()
    for n in numbers:
        queue.put_nowait(n)
    counts: Counter[str] = Counter()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shop.test") as http:

        async def client() -> None:
            while not queue.empty():
                no = queue.get_nowait()
                body = json.dumps({"client_order_no": no, "sku": sku, "quantity": 1}).encode()
                r = await http.post("/api/v1/orders", content=body,
                                    headers=signer.headers("POST", "/api/v1/orders", "", body))
                counts["OK" if r.status_code == 201 else r.json()["code"]] += 1

        await asyncio.gather(*(client() for _ in range(concurrency)))
    await shop.close()
    return dict(counts)


if __name__ == "__main__":
    p, n, c = (int(x) for x in sys.argv[1:4])
    print(json.dumps(asyncio.run(main(p, n, c, sys.argv[4]))))
