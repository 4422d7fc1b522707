"""A buyer process for the concurrency test: N concurrent customers checking out and paying.

Run as `python -m tests.e2e.buyer PROC_NO ATTEMPTS CONCURRENCY SKU_IDS` with KAMIBOT_* settings in the env.
Prints one JSON line of counts.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys

from bot.composition import build_shop
from bot.settings import Settings
from fulfillment.errors import OutOfStock
from fulfillment.orders import CheckoutRequest
from storage.records import PaymentOutcome


async def main(proc: int, attempts: int, concurrency: int, sku_ids: list[int]) -> dict[str, int]:
    shop = await build_shop(Settings())
    provider = shop.providers["test"]
    counts = {"paid": 0, "out_of_stock": 0, "cancelled": 0, "other": 0}
    rng = random.Random(proc)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(attempts):
        queue.put_nowait(i)

    async def buy(user: str, sku_id: int, qty: int) -> bool:
        try:
            order = await shop.orders.checkout(CheckoutRequest("console", user, user, sku_id, qty))
        except OutOfStock:
            counts["out_of_stock"] += 1
            return False
        if rng.random() < 0.1:
            await shop.orders.cancel(order.ref, user)  # abandoned checkout: stock goes back
            counts["cancelled"] += 1
            return True
        result = await shop.payments.receive(provider.pay(order))
        counts["paid" if result.outcome == PaymentOutcome.ALLOCATED else "other"] += 1
        return True

    async def customer(n: int) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            await buy(f"p{proc}-c{n}-{i}", rng.choice(sku_ids), rng.choice((1, 1, 2)))

    await asyncio.gather(*(customer(n) for n in range(concurrency)))
    # demand exceeds supply: sweep what cancellations handed back, one use at a time, each by a customer of its own
    # (one sweeping customer met the risk rule of 10 orders an hour when many cancelled codes came back at once)
    sweep = 0
    while await buy(f"p{proc}-sweep-{sweep}", sku_ids[0], 1):
        sweep += 1
    await shop.close()
    return counts


if __name__ == "__main__":
    proc, attempts, conc = (int(x) for x in sys.argv[1:4])
    skus = [int(x) for x in sys.argv[4].split(",")]
    print(json.dumps(asyncio.run(main(proc, attempts, conc, skus))))
