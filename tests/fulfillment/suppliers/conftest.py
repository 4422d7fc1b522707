"""Benches for the supplier suites: each real-protocol adapter against its fake supplier on 127.0.0.1 (behind the
fault proxy), with a callback receiver on loopback answering what the adapter says."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fulfillment.suppliers.acgfaka import AcgFakaConfig, AcgFakaSupplier
from fulfillment.suppliers.errors import ForgedCallback
from fulfillment.suppliers.kashangwl import KashangwlConfig, KashangwlSupplier
from fulfillment.suppliers.protocol import Money, Supplier, SupplierOrder
from fulfillment.suppliers.transport import HttpPolicy
from tests.fakes.loopback import free_port, serve, shut
from tests.fakes.supplier_acgfaka import FakeAcgFaka
from tests.fakes.supplier_faults import Running
from tests.fakes.supplier_kashangwl import FakeKashangwl, FakeProduct

POLICY = HttpPolicy(connect_timeout=1.0, read_timeout=1.0, read_attempts=2, retry_backoff=0.01)
CARD_PRICE = 990  # 9.90 yuan


@dataclass
class Receiver:
    """Our callback endpoint: verifies through the adapter, answers its callback_answer or 403."""

    supplier: Supplier | None = None
    accepted: list[SupplierOrder] = field(default_factory=list)
    refused: int = 0
    fail_next: int = 0  # answer 500 to this many valid callbacks (the supplier must retry)

    async def notify(self, request: Request) -> Response:
        assert self.supplier is not None
        try:
            order = self.supplier.parse_callback(dict(request.headers), await request.body())
        except ForgedCallback:
            self.refused += 1
            return Response("forged", status_code=403)
        if self.fail_next:
            self.fail_next -= 1
            return Response("busy", status_code=500)
        self.accepted.append(order)
        return Response(self.supplier.callback_answer or b"")


@dataclass
class Bench:
    kind: str
    supplier: Any  # KashangwlSupplier | AcgFakaSupplier: the Supplier protocol plus adapter extras
    fake: Any  # FakeKashangwl | FakeAcgFaka
    url: str
    card: str  # a card product id with stock
    receiver: Receiver
    secret_key: str

    def max_cost(self, minor: int = CARD_PRICE) -> Money:
        return Money(minor, "CNY")

    @property
    def booked(self) -> int:
        """Orders the fake supplier actually booked (charged)."""
        return len(self.fake.orders) if self.kind == "kashangwl" else len(self.fake.trades)

    def issued(self) -> list[str]:
        return list(self.fake.issued_codes)

    def with_key(self, key: str) -> Any:
        if self.kind == "kashangwl":
            return KashangwlSupplier(KashangwlConfig(self.url, self.fake.customer_id, key, policy=POLICY))
        return AcgFakaSupplier(AcgFakaConfig(self.url, self.fake.app_id, key, policy=POLICY))

    def at(self, url: str) -> Any:
        if self.kind == "kashangwl":
            return KashangwlSupplier(KashangwlConfig(url, self.fake.customer_id, self.secret_key, policy=POLICY))
        return AcgFakaSupplier(AcgFakaConfig(url, self.fake.app_id, self.secret_key, policy=POLICY))


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    r = Receiver()
    port = free_port()
    server, task = await serve(Starlette(routes=[Route("/notify", r.notify, methods=["POST"])]), port)
    yield r, f"http://127.0.0.1:{port}/notify"
    await shut(server, task)


async def _kashangwl(receiver: tuple[Receiver, str]) -> AsyncIterator[Bench]:
    fake = FakeKashangwl()
    fake.callback_interval = 0.05
    fake.add_product(FakeProduct("41847", "Steam 10 USD", CARD_PRICE, stock=50))
    fake.add_product(FakeProduct("41848", "China Mobile 10 CNY", 1000, type=1))
    async with Running(fake.app) as running:
        supplier = KashangwlSupplier(KashangwlConfig(running.url, fake.customer_id, fake.key, notify_url=receiver[1],
                                                     product_ids=("41847", "41848"), policy=POLICY))
        receiver[0].supplier = supplier
        yield Bench("kashangwl", supplier, fake, running.url, "41847", receiver[0], fake.key)
        await fake.close()
        await supplier.aclose()


async def _acgfaka(receiver: tuple[Receiver, str]) -> AsyncIterator[Bench]:
    fake = FakeAcgFaka()
    fake.add_commodity("STEAM10", "Steam 10 USD", CARD_PRICE, stock=50)
    async with Running(fake.app) as running:
        supplier = AcgFakaSupplier(AcgFakaConfig(running.url, fake.app_id, fake.app_key, policy=POLICY))
        receiver[0].supplier = supplier
        yield Bench("acgfaka", supplier, fake, running.url, "STEAM10", receiver[0], fake.app_key)
        await fake.close()
        await supplier.aclose()


@pytest.fixture(params=["kashangwl", "acgfaka"])
async def bench(request: pytest.FixtureRequest, receiver: tuple[Receiver, str]) -> AsyncIterator[Bench]:
    make = _kashangwl if request.param == "kashangwl" else _acgfaka
    async for b in make(receiver):
        yield b


@pytest.fixture
async def kashangwl(receiver: tuple[Receiver, str]) -> AsyncIterator[Bench]:
    async for b in _kashangwl(receiver):
        yield b


@pytest.fixture
async def acgfaka(receiver: tuple[Receiver, str]) -> AsyncIterator[Bench]:
    async for b in _acgfaka(receiver):
        yield b
