"""No key and no code in any exception text or log line, whatever goes wrong."""

from __future__ import annotations

import logging
import traceback

import pytest

from fulfillment.suppliers.errors import SupplierError, scrub
from fulfillment.suppliers.kashangwl import KashangwlConfig
from fulfillment.suppliers.protocol import Money, OrderStatus, SupplierOrder
from tests.fakes.loopback import free_port

from .conftest import Bench

pytestmark = pytest.mark.timeout(60)


def test_order_repr_hides_codes_and_config_repr_hides_the_key():
    order = SupplierOrder("r1", OrderStatus.SUCCEEDED, "s1", codes=("CODE-SECRET-1",))
    assert "CODE-SECRET-1" not in repr(order)
    assert "CODE-SECRET-1" not in str(order)
    assert "<1 hidden>" in repr(order)
    assert "KEY-SECRET" not in repr(KashangwlConfig("http://x", "1", "KEY-SECRET"))


def test_scrub_removes_the_key_a_supplier_echoes():
    assert scrub("bad sign for key=KEY-SECRET\nretry", "KEY-SECRET") == "bad sign for key=*** retry"


async def test_no_secret_in_exceptions_or_logs_across_every_fault(bench: Bench, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []

    async def attempt(coro) -> None:
        try:
            await coro
        except SupplierError as exc:
            texts.extend([str(exc), repr(exc), "".join(traceback.format_exception(exc))])

    ok = await bench.supplier.buy_codes("ref-s-0", bench.card, 2, Money(990))
    texts.append(repr(ok))
    faults = bench.fake.faults
    for i, fault in enumerate(["hold_after_accept", "http_500_after_accept", "reset_after_accept",
                               "html_after_accept", "truncated_after_accept", "fewer_codes"]):
        setattr(faults, fault, 1)
        await attempt(bench.supplier.buy_codes(f"ref-s-{i + 1}", bench.card, 2, Money(990)))
    await attempt(bench.supplier.buy_codes("ref-s-0", bench.card, 1, Money(990)))  # repeated reference
    await attempt(bench.supplier.buy_codes("ref-s-9", bench.card, 1, Money(1)))  # above the price limit
    wrong = bench.with_key("f" * 32)
    await attempt(wrong.buy_codes("ref-s-10", bench.card, 1, Money(990)))
    await wrong.aclose()
    dead = bench.at(f"http://127.0.0.1:{free_port()}")
    await attempt(dead.buy_codes("ref-s-11", bench.card, 1, Money(990)))
    await attempt(dead.balance())
    await dead.aclose()
    bench.fake.balance = 0
    await attempt(bench.supplier.buy_codes("ref-s-12", bench.card, 1, Money(990)))
    try:
        bench.supplier.parse_callback({}, b"sign=" + bench.secret_key.encode())
    except SupplierError as exc:
        texts.append(str(exc))

    logged = [r.getMessage() + (r.exc_text or "") for r in caplog.records]
    haystack = "\n".join(texts + logged)
    assert len(texts) >= 10
    assert bench.secret_key not in haystack
    leaked = [code for code in bench.issued() for part in code.split() if part in haystack]
    assert leaked == []
