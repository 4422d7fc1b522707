"""A payment + delivery worker that SIGKILLs itself at a named checkpoint (crash tests).

`python -m tests.e2e.crash_worker EVENTS_JSON SINK_JSONL [KILL_AT KILL_ON_NTH]` with KAMIBOT_* env.
It receives every payment event of EVENTS_JSON (as a provider would, retries included), recovers
unapplied events, then drains the outbox into SINK_JSONL (one line per message sent).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import sys
from datetime import timedelta
from pathlib import Path

from bot.composition import build_shop
from bot.settings import Settings
from fulfillment.delivery import Delivery
from storage.records import PaymentEventIn


class KillAt:
    def __init__(self, name: str, nth: int) -> None:
        self.name, self.nth, self.seen = name, nth, 0

    def reach(self, name: str) -> None:
        if name == self.name:
            self.seen += 1
            if self.seen == self.nth:
                os.kill(os.getpid(), signal.SIGKILL)


class SinkChannel:
    """Stands for the chat platform: appends what the customer would see (code digests, not codes)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def deliver(self, d: Delivery) -> None:
        line = {"order": d.order.ref, "kind": d.kind, "outbox": d.outbox_id, "interrupted": d.interrupted,
                "codes": sorted(hashlib.sha256(c.encode()).hexdigest()[:16] for c in d.codes)}
        with self.path.open("a") as fh:
            fh.write(json.dumps(line) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


async def main(events_file: Path, sink: Path, kill_at: str, nth: int) -> None:
    checkpoints = KillAt(kill_at, nth) if kill_at else None
    shop = await build_shop(Settings(), checkpoints=checkpoints)
    shop.delivery.lease = timedelta(seconds=1)
    shop.channels["console"] = SinkChannel(sink)
    await shop.payments.apply_pending()
    for raw in json.loads(events_file.read_text()):
        await shop.payments.receive(PaymentEventIn(**raw))
    for _ in range(100):  # leases of a killed predecessor expire after 1 s
        await shop.delivery.drain()
        if not await shop.store.pending_outbox():
            break
        await asyncio.sleep(0.2)
    await shop.close()


if __name__ == "__main__":
    args = sys.argv[1:]
    asyncio.run(main(Path(args[0]), Path(args[1]), args[2] if len(args) > 2 else "",
                     int(args[3]) if len(args) > 3 else 0))
