"""Secrets in logs, order-API side (issue 17, Observability; Telegram and WeChat: test_telegram_logs.py and
test_wechat_logs.py): a signed order with a callback URL through a real `kamibot run` at log level INFO — the order
answered with its codes, a read of it, a forged and a replayed request, the signed `order.delivered` callback — then
every line the process wrote (stdout: uvicorn's access log; stderr: our log) is searched for the client's secret,
every signature, a secret in the callback URL and the codes."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import sys
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bot.composition import build_shop
from bot.settings import Settings
from fulfillment import api_signing as signing
from fulfillment.api_clients import ApiKeys
from storage.records import Price
from tests.e2e.procs import ROOT, settings_env
from tests.fakes.api_callback_receiver import CallbackReceiver
from tests.fakes.loopback import free_port, serve, shut
from tests.storage.seed import make_shop

#: downstream shops put their own secret in the callback URL's query: it is theirs, and not for our logs
HOOK_TOKEN = "cb-token-" + secrets.token_hex(8)


async def _seed(tmp_path: Path, db_url: str) -> tuple[str, str, str]:
    shop = await build_shop(Settings(data_dir=tmp_path, database_url=db_url))
    try:
        seeded = await make_shop(shop.store, codes=10, vault=shop.vault)
        await shop.store.set_price(Price(seeded.sku.id, "api", "CNY", 700))
        keys = ApiKeys(shop.store, shop.vault)
        key = await keys.create("downstream", ["catalog:read", "orders:write", "orders:read"])
        await keys.top_up(key.client.key_id, 10_000, "CNY", "seed")
    finally:
        await shop.close()
    return key.client.key_id, key.secret, seeded.sku.slug


async def test_a_whole_order_api_purchase_leaves_no_secret_in_the_logs(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'shop.db'}"
    key_id, secret, sku = await _seed(tmp_path, db_url)
    receiver = CallbackReceiver(key_id, secret)
    signatures: set[str] = set()

    async def hook(request: Request) -> Response:
        signatures.add(request.headers.get(signing.SIGNATURE_HEADER, ""))
        return await receiver.receive(request)

    hook_port, port = free_port(), free_port()
    hook_server = await serve(Starlette(routes=[Route("/hook", hook, methods=["POST"])]), hook_port)
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, **settings_env(tmp_path, db_url), "PYTHONPATH": str(ROOT), "KAMIBOT_HTTP_PORT": str(port),
           "KAMIBOT_LOG_LEVEL": "INFO", "KAMIBOT_API__ALLOW_PRIVATE_CALLBACKS": "true"}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "run", cwd=ROOT, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    signer = signing.Signer(key_id, secret)
    codes: list[str] = []
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            for _ in range(400):
                try:
                    await http.get("/healthz")
                    break
                except httpx.TransportError:
                    assert proc.returncode is None, "kamibot run exited"
                    await asyncio.sleep(0.05)

            async def call(method: str, path: str, body: bytes = b"", **extra: str) -> httpx.Response:
                headers = {**signer.headers(method, path, "", body), **extra}
                signatures.add(headers[signing.SIGNATURE_HEADER])
                return await http.request(method, path, content=body, headers=headers)

            order = json.dumps({"client_order_no": "LOG-1", "sku": sku, "quantity": 2,
                                "callback_url": f"http://127.0.0.1:{hook_port}/hook?token={HOOK_TOKEN}"}).encode()
            placed = await call("POST", "/api/v1/orders", order, **{signing.IDEMPOTENCY_HEADER: "idem-log-1"})
            assert placed.status_code == 201, placed.text
            codes = placed.json()["codes"]
            assert len(codes) == 2
            read = await call("GET", "/api/v1/orders/LOG-1")
            assert read.status_code == 200
            # a forged signature and a replayed request are refused, and their headers are not logged either
            forged = signer.headers("POST", "/api/v1/orders", "", order)
            forged[signing.SIGNATURE_HEADER] = "f" * len(forged[signing.SIGNATURE_HEADER])
            signatures.add(forged[signing.SIGNATURE_HEADER])
            assert (await http.post("/api/v1/orders", content=order, headers=forged)).status_code == 401
            replayed = signer.headers("GET", "/api/v1/orders/LOG-1")
            signatures.add(replayed[signing.SIGNATURE_HEADER])
            assert (await http.get("/api/v1/orders/LOG-1", headers=replayed)).status_code == 200
            assert (await http.get("/api/v1/orders/LOG-1", headers=replayed)).status_code == 401
            for _ in range(200):  # the signed order.delivered callback
                if receiver.events:
                    break
                await asyncio.sleep(0.05)
            assert [e["type"] for e in receiver.events] == ["order.delivered"]
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        await shut(*hook_server)
    text = out.decode() + err.decode()
    assert "event=server.stopped" in text, text[-3000:]
    assert "POST /api/v1/orders" in text  # uvicorn's access log is on
    assert receiver.refused == 0
    assert len(signatures) >= 5  # ours, the forged one and the shop's callback signature
    leaked = sorted(s for s in (secret, HOOK_TOKEN, *signatures, *codes) if s and s in text)
    assert leaked == [], [line for line in text.splitlines() if any(s in line for s in leaked)][:5]
