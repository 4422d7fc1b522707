"""POST /telegram/webhook: only with the right secret token, only well-formed updates, nothing else processed."""

from __future__ import annotations

import httpx
import pytest

from bot.jobs import JobStatus
from bot.server import create_app


class Sink:
    secret = "s3cret-token"

    def __init__(self) -> None:
        self.fed: list[dict] = []

    async def feed(self, data: dict) -> bool:
        self.fed.append(data)
        return True


async def _post(shop, sink, body: bytes, secret: str | None):
    headers = {"content-type": "application/json"}
    if secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    transport = httpx.ASGITransport(app=create_app(shop, JobStatus(), telegram=sink))
    async with httpx.AsyncClient(transport=transport, base_url="http://kamibot") as client:
        return await client.post("/telegram/webhook", content=body, headers=headers)


@pytest.mark.parametrize("secret", [None, "", "wrong", "s3cret-token-but-longer"])
async def test_missing_or_wrong_secret_is_403_and_nothing_processed(shop, secret):
    sink = Sink()
    response = await _post(shop, sink, b'{"update_id": 1}', secret)
    assert response.status_code == 403
    assert sink.fed == []


@pytest.mark.parametrize("body", [b"not json", b"[1,2]", b'{"update_id": "x"}', b"{}"])
async def test_malformed_updates_are_400(shop, body):
    sink = Sink()
    response = await _post(shop, sink, body, Sink.secret)
    assert response.status_code == 400
    assert sink.fed == []


async def test_oversized_body_is_413(shop):
    sink = Sink()
    response = await _post(shop, sink, b'{"update_id": 1, "x": "' + b"a" * 2_000_000 + b'"}', Sink.secret)
    assert response.status_code == 413
    assert sink.fed == []


async def test_good_update_is_queued(shop):
    sink = Sink()
    response = await _post(shop, sink, b'{"update_id": 7, "message": {"message_id": 1}}', Sink.secret)
    assert response.status_code == 200
    assert sink.fed == [{"update_id": 7, "message": {"message_id": 1}}]


async def test_without_telegram_configured_the_route_refuses(shop):
    transport = httpx.ASGITransport(app=create_app(shop, JobStatus()))
    async with httpx.AsyncClient(transport=transport, base_url="http://kamibot") as client:
        response = await client.post("/telegram/webhook", content=b'{"update_id": 1}',
                                     headers={"X-Telegram-Bot-Api-Secret-Token": ""})
    assert response.status_code == 403
