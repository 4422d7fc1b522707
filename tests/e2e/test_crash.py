"""SIGKILL a worker at injected points; after a restart every paid order is delivered, none twice."""

from __future__ import annotations

import json
import signal
from dataclasses import asdict

import pytest

from bot.composition import build_shop
from bot.settings import Settings
from fulfillment.checkpoints import DELIVERY_CLAIMED, DELIVERY_SENT, PAYMENT_RECORDED
from fulfillment.orders import CheckoutRequest
from storage.records import OrderState
from tests.e2e import db_checks
from tests.e2e.procs import settings_env, spawn
from tests.storage.seed import make_shop

ORDERS = 8


async def _prepare(tmp_path, db_url):
    shop = await build_shop(Settings(data_dir=tmp_path, database_url=db_url))
    seeded = await make_shop(shop.store, codes=30, vault=shop.vault)
    events, refs = [], []
    for n in range(ORDERS):
        sku = seeded.big if n % 3 == 0 else seeded.sku
        order = await shop.orders.checkout(CheckoutRequest("console", f"u{n}", f"u{n}", sku.id, 1 + n % 2))
        refs.append(order.ref)
        event = shop.providers["test"].pay(order)
        events.append({k: v for k, v in asdict(event).items() if k != "received_at"})
    await shop.close()
    path = tmp_path / "events.json"
    path.write_text(json.dumps(events))
    return path, refs


def _run(tmp_path, db_url, events, sink, *kill):
    proc = spawn("tests.e2e.crash_worker", str(events), str(sink), *kill, env=settings_env(tmp_path, db_url))
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


# after the payment is recorded (and allocated) / after allocation, with the outbox row claimed for
# sending / after the send, before the row is marked done
@pytest.mark.parametrize(("point", "nth"), [(PAYMENT_RECORDED, 3), (DELIVERY_CLAIMED, 2), (DELIVERY_SENT, 2)])
async def test_killed_worker_resumes_and_delivers_every_paid_order_once(tmp_path, db_url, point, nth):
    events, refs = await _prepare(tmp_path, db_url)
    sink = tmp_path / "sink.jsonl"
    code, err = _run(tmp_path, db_url, events, sink, point, str(nth))
    assert code == -signal.SIGKILL, err[-2000:]
    code, err = _run(tmp_path, db_url, events, sink)  # restart; the provider retries every notification
    assert code == 0, err[-2000:]

    shop = await build_shop(Settings(data_dir=tmp_path, database_url=db_url))
    for ref in refs:
        assert (await shop.store.order_by_ref(ref)).state == OrderState.DELIVERED, ref
    assert await shop.store.unapplied_payments(100) == []
    await shop.close()
    sent: dict[str, set[tuple[str, ...]]] = {}
    said: dict[str, list[bool]] = {}  # per order, each message's "sent again after an interruption"
    for line in sink.read_text().splitlines():
        msg = json.loads(line)
        sent.setdefault(msg["order"], set()).add(tuple(msg["codes"]))
        said.setdefault(msg["order"], []).append(msg["interrupted"])
    # a buyer who gets a delivery twice (killed after the send) is told the second one is the same again
    assert all(not flags[0] and all(flags[1:]) for flags in said.values() if len(flags) > 1), said
    if point == DELIVERY_SENT:
        assert any(len(flags) == 2 for flags in said.values()), said
    assert set(sent) == set(refs), "every paid order reached its buyer"
    assert all(len(variants) == 1 for variants in sent.values()), "a resend repeats the same codes, never others"
    all_codes = [c for variants in sent.values() for codes in variants for c in codes]
    assert len(all_codes) == len(set(all_codes)), "no code went to two orders"
    bad, totals = await db_checks.run(db_url)
    assert {name: rows for name, rows in bad.items() if rows} == {}
    assert totals["paid_orders"] == ORDERS
