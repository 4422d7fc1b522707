"""Sends one signed POST /api/v1/orders through the real app in this process and SIGKILLs itself at a named
checkpoint (crash test of the order API).

`python -m tests.e2e.api_crash_worker KILL_AT REQUEST_JSON` with KAMIBOT_* settings and KB_TEST_API_KEY /
KB_TEST_API_SECRET in the env; REQUEST_JSON is {"body": …, "idem": …}. Prints the answer if it lives.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

import httpx
from starlette.applications import Starlette

from bot.api import build_api
from bot.composition import build_shop
from bot.settings import Settings
from fulfillment.api_signing import IDEMPOTENCY_HEADER, Signer
from tests.e2e.crash_worker import KillAt


async def main(kill_at: str, request: dict[str, object]) -> None:
    shop = await build_shop(Settings(), checkpoints=KillAt(kill_at, 1))
    app = Starlette(routes=build_api(shop).routes())
    signer = Signer(os.environ["KB_TEST_API_KEY"], os.environ["KB_TEST_API_SECRET"])
    body = json.dumps(request["body"]).encode()
    headers = {**signer.headers("POST", "/api/v1/orders", "", body), IDEMPOTENCY_HEADER: str(request["idem"])}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shop.test") as http:
        r = await http.post("/api/v1/orders", content=body, headers=headers)
    print(r.status_code, r.text)
    await shop.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], json.loads(sys.argv[2])))
