"""A supply worker for the procurement crash and concurrency tests, as its own OS process.

`python -m tests.e2e.procure_worker restock` runs the restock job once (the test SIGKILLs it while the supplier
holds its answer); `resolve` queries open procurements until none is open (the restarted process);
`buy SKU_ID N` checks out N orders of one SKU (on-demand buying) and pays them, printing one JSON line.
Settings from KAMIBOT_* environment variables.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from datetime import timedelta

from bot.composition import build_shop
from bot.settings import Settings
from bot.supply import build_supply
from fulfillment.errors import OutOfStock
from fulfillment.orders import CheckoutRequest
from fulfillment.procurement import ProcurementPolicy
from storage.records_supply import ProcurementState


async def main(mode: str, args: list[str]) -> int:
    shop = await build_shop(Settings())
    supply = build_supply(shop, holder=f"worker-{mode}-{args}")
    try:
        if mode == "restock":
            await supply.sourcing.restock_due()
        elif mode == "resolve":
            supply.procurement.policy = ProcurementPolicy(sent_grace=timedelta(0))
            for _ in range(200):
                await supply.procurement.resolve_due()
                if not await shop.store.procurements([ProcurementState.PLANNED, ProcurementState.SENT,
                                                      ProcurementState.UNKNOWN], 1):
                    break
                await asyncio.sleep(0.05)
        elif mode == "buy":
            sold = refused = 0

            async def one(n: int) -> None:
                nonlocal sold, refused
                with contextlib.suppress(OutOfStock):
                    order = await shop.orders.checkout(CheckoutRequest("console", f"{args[2]}-{n}", f"c{n}",
                                                                       int(args[0]), 1))
                    await shop.payments.receive(shop.providers["test"].pay(order))
                    sold += 1
                    return
                refused += 1

            await asyncio.gather(*(one(n) for n in range(int(args[1]))))
            print(json.dumps({"sold": sold, "refused": refused}))
    finally:
        await supply.aclose()
        await shop.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2:])))
