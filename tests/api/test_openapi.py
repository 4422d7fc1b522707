"""The OpenAPI 3.1 document (/api/openapi.json) against the real server: schemathesis generates requests for every
operation from the document, the test signs each one like a client would and sends it to a `kamibot run` process;
every answer must be documented (status, content type, body schema) and none a server error."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from bot.composition import build_shop
from bot.settings import Settings
from fulfillment.api_clients import ApiKeys
from fulfillment.api_signing import Signer
from handlers.api.openapi import document
from storage.records import Price
from tests.e2e.procs import settings_env, spawn
from tests.storage.seed import make_shop

schema = schemathesis.openapi.from_dict(document())
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _seed(data: Path) -> tuple[str, str]:
    shop = await build_shop(Settings(data_dir=data))
    seeded = await make_shop(shop.store, codes=30, vault=shop.vault)
    await shop.store.set_price(Price(seeded.sku.id, "api", "CNY", 700))
    keys = ApiKeys(shop.store, shop.vault)
    key = await keys.create("fuzz", ["catalog:read", "orders:write", "orders:read"])
    await keys.top_up(key.client.key_id, 20_000, "CNY", "seed")
    await shop.close()
    return key.client.key_id, key.secret


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, Signer]]:
    data = tmp_path_factory.mktemp("openapi")
    key_id, secret = asyncio.run(_seed(data))
    port = _free_port()
    env = {**settings_env(data, f"sqlite:///{data / 'kamibot.db'}"), "KAMIBOT_HTTP_PORT": str(port),
           "KAMIBOT_API__RATE_PER_S": "100000", "KAMIBOT_API__BURST": "100000"}
    proc = spawn("bot", "run", env=env)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
    try:
        for _ in range(200):
            try:
                if client.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        else:
            pytest.fail("kamibot run did not come up")
        yield client, Signer(key_id, secret)
    finally:
        client.close()
        proc.terminate()
        proc.communicate(timeout=30)


def test_the_document_is_served(server: tuple[httpx.Client, Signer]) -> None:
    client, _ = server
    answer = client.get("/api/openapi.json")
    assert answer.status_code == 200
    assert answer.json() == json.loads(json.dumps(document()))


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_every_answer_of_the_real_server_is_documented(case: schemathesis.Case,
                                                        server: tuple[httpx.Client, Signer]) -> None:
    client, signer = server
    kwargs = case.as_transport_kwargs(base_url=str(client.base_url))
    if "json" in kwargs:
        body = json.dumps(kwargs["json"]).encode()
    else:
        data = kwargs.get("data") or b""
        body = data.encode() if isinstance(data, str) else bytes(data)
    query = urlencode(kwargs.get("params") or {}, doseq=True)
    path = urlsplit(kwargs["url"]).path
    headers = {k: str(v) for k, v in (kwargs.get("headers") or {}).items()
               if k.lower().startswith("idempotency")}
    headers.update(signer.headers(case.method, path, query, body))
    headers["content-type"] = "application/json"
    response = client.request(case.method, path + (f"?{query}" if query else ""), content=body, headers=headers)
    case.validate_response(response, checks=CHECKS)
