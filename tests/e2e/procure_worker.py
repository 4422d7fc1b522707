"""A supply worker for the procurement crash and concurrency tests, as its own OS process.

`python -m tests.e2e.procure_worker restock` runs the restock job once (the test SIGKILLs it while the supplier
holds its answer); `resolve` queries open procurements until none is open (the restarted process);
`buy SKU_ID N PREFIX` checks out N orders of one SKU and pays them (an on-demand SKU with an empty pool: each paid
order waits on the supplier), then runs the delivery worker and the resolver until each of them is delivered or
refunded, printing one JSON line (`pay`: the same without the resolver job, so a SIGKILL never leaves its lease
held); `settle` does the latter for every order waiting (the process restarted after a
SIGKILL). Settings from KAMIBOT_* environment variables.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from datetime import timedelta

from bot.composition import Shop, build_shop
from bot.settings import Settings
from bot.supply import Supply, build_supply
from fulfillment.delivery import Delivery
from fulfillment.errors import OutOfStock
from fulfillment.orders import CheckoutRequest
from fulfillment.procurement import ProcurementPolicy
from storage.records import OrderState
from storage.records_supply import ProcurementState

WAITING = (OrderState.PAID, OrderState.DELIVERING, OrderState.FAILED)  # failed: its refund is queued


class Console:
    """The buyers' chat: deliveries are accepted (the proofs read the database)."""

    async def deliver(self, delivery: Delivery) -> None:
        return None


async def settle(shop: Shop, supply: Supply, order_ids: list[int] | None, seconds: float,
                 resolve: bool = True) -> dict[str, int]:
    """Delivery worker and resolver until the orders (all waiting ones when None) are delivered or refunded."""
    end = time.monotonic() + seconds
    while True:
        await shop.delivery.run_once(200)
        if resolve:
            await supply.procurement.resolve_due()
        if order_ids is None:
            waiting = [o for s in WAITING for o in await shop.store.orders_in_state(s, 1)]
            if not waiting or time.monotonic() > end:
                return {}
        else:
            states = [(await shop.store.order_by_id(i)).state for i in order_ids]  # type: ignore[union-attr]
            if all(s not in WAITING for s in states) or time.monotonic() > end:
                return {s.value: states.count(s) for s in set(states)}
        await asyncio.sleep(0.02)


async def main(mode: str, args: list[str]) -> int:
    shop = await build_shop(Settings())
    shop.channels["console"] = Console()
    supply = build_supply(shop, holder=f"worker-{mode}-{args}")
    try:
        if mode == "restock":
            await supply.sourcing.restock_due()
        elif mode == "resolve":
            supply.procurement.policy = ProcurementPolicy(sent_grace=timedelta(0), planned_grace=timedelta(0))
            for _ in range(200):
                await supply.procurement.resolve_due()
                if not await shop.store.procurements([ProcurementState.PLANNED, ProcurementState.SENT,
                                                      ProcurementState.UNKNOWN], 1):
                    break
                await asyncio.sleep(0.05)
        elif mode == "settle":
            supply.procurement.policy = ProcurementPolicy(sent_grace=timedelta(0), planned_grace=timedelta(0))
            await settle(shop, supply, None, 20)
        elif mode in ("buy", "pay"):  # pay: no resolver (the crash test kills it inside the purchase)
            # a request the overloaded fake dropped (ReadError: unknown) and cannot find is failed after 2 s
            supply.procurement.policy = ProcurementPolicy(not_found_after=timedelta(seconds=2))
            paid: list[int] = []
            refused = 0

            async def one(n: int) -> None:
                nonlocal refused
                with contextlib.suppress(OutOfStock):
                    order = await shop.orders.checkout(CheckoutRequest("console", f"{args[2]}-{n}", f"c{n}",
                                                                       int(args[0]), 1))
                    await shop.payments.receive(shop.providers["test"].pay(order))
                    paid.append(order.id)
                    return
                refused += 1

            await asyncio.gather(*(one(n) for n in range(int(args[1]))))
            await settle(shop, supply, paid, 20, resolve=mode == "buy")
            # rows of the other processes' orders this one claimed are finished before it exits (a process that
            # stops mid-purchase leaves its claim to expire: correct, but a minute later)
            await settle(shop, supply, None, 20, resolve=mode == "buy")
            await shop.delivery.drain()
            outcome = await settle(shop, supply, paid, 0, resolve=False)
            print(json.dumps({"paid": len(paid), "refused": refused, **outcome}))
    finally:
        await supply.aclose()
        await shop.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2:])))
