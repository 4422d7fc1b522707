"""Every bad input of issue 15 gets its machine-readable code and changes nothing (both backends): orders, the
wallet and its ledger, stock and the client's order numbers are as before."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path

import pytest

from fulfillment import api_clients
from fulfillment.api_signing import Signer
from tests.api.conftest import ApiShop, close_api_shop, open_api_shop


async def expect(api: ApiShop, response_coro: object, status: int, code: str) -> None:
    before = await api.state()
    r = await response_coro  # type: ignore[misc]
    assert (r.status_code, r.json()["code"]) == (status, code), r.text
    assert set(r.json()) == {"code", "message"}
    assert "Traceback" not in r.text
    assert api.key.secret not in r.text
    assert await api.state() == before


async def test_wrong_signature(api: ApiShop) -> None:
    await expect(api, api.call(
        "POST", "/api/v1/orders", {"client_order_no": "A-1", "sku": api.sku_slug, "quantity": 1},
        signer=Signer(api.key.client.key_id, "ks_wrong")), 401, "BAD_SIGNATURE")


async def test_signature_over_another_body(api: ApiShop) -> None:
    body = json.dumps({"client_order_no": "A-1", "sku": api.sku_slug, "quantity": 1}).encode()
    headers = api.signer.headers("POST", "/api/v1/orders", "", body.replace(b"1}", b"2}"))
    await expect(api, api.http.post("/api/v1/orders", content=body, headers=headers), 401, "BAD_SIGNATURE")


async def test_stale_timestamp(api: ApiShop) -> None:
    body = json.dumps({"client_order_no": "A-1", "sku": api.sku_slug, "quantity": 1}).encode()
    headers = api.signer.headers("POST", "/api/v1/orders", "", body, timestamp=int(time.time()) - 301)
    await expect(api, api.http.post("/api/v1/orders", content=body, headers=headers), 401, "STALE_TIMESTAMP")


async def test_reused_nonce(api: ApiShop) -> None:
    headers = api.signer.headers("GET", "/api/v1/wallet", nonce="n-0123456789")
    assert (await api.http.get("/api/v1/wallet", headers=headers)).status_code == 200
    body = json.dumps({"client_order_no": "A-1", "sku": api.sku_slug, "quantity": 1}).encode()
    again = api.signer.headers("POST", "/api/v1/orders", "", body, nonce="n-0123456789")
    await expect(api, api.http.post("/api/v1/orders", content=body, headers=again), 401, "NONCE_REUSED")


async def test_unknown_key(api: ApiShop) -> None:
    await expect(api, api.call("POST", "/api/v1/orders", {"client_order_no": "A-1", "sku": api.sku_slug,
                                                           "quantity": 1}, signer=Signer("kk_nobody", "x")),
                 401, "UNKNOWN_KEY")


async def test_revoked_key(api: ApiShop) -> None:
    await api.keys.revoke(api.key.client.key_id)
    await expect(api, api.order("A-1"), 401, "UNKNOWN_KEY")


async def test_missing_scope(api: ApiShop) -> None:
    reader = await api.keys.create("reader", ["catalog:read"])
    await api.keys.top_up(reader.client.key_id, 10_000, "CNY", "")
    await expect(api, api.call("POST", "/api/v1/orders", {"client_order_no": "A-1", "sku": api.sku_slug,
                                                           "quantity": 1},
                               signer=Signer(reader.client.key_id, reader.secret)), 403, "MISSING_SCOPE")


@pytest.mark.parametrize(("quantity", "code"), [(0, "BAD_QUANTITY"), (10**9, "BAD_QUANTITY"),
                                                (51, "BAD_QUANTITY"), (-1, "BAD_QUANTITY"),
                                                (1.5, "BAD_QUANTITY"), (True, "BAD_QUANTITY"),
                                                ("x", "BAD_QUANTITY")])
async def test_bad_quantity(api: ApiShop, quantity: object, code: str) -> None:
    await expect(api, api.order("A-1", quantity), 422, code)


async def test_unknown_sku(api: ApiShop) -> None:
    await expect(api, api.call("POST", "/api/v1/orders", {"client_order_no": "A-1", "sku": "nope",
                                                           "quantity": 1}), 404, "UNKNOWN_SKU")


async def test_insufficient_balance(api: ApiShop) -> None:
    await expect(api, api.order("A-1", 15), 402, "INSUFFICIENT_BALANCE")


async def test_out_of_stock(api: ApiShop) -> None:
    await api.keys.top_up(api.key.client.key_id, 100_000, "CNY", "")
    await api.order("A-0", 10)
    await api.order("A-2", 10)
    await expect(api, api.order("A-1", 1), 409, "OUT_OF_STOCK")


async def test_duplicate_order_number_with_another_body(api: ApiShop) -> None:
    assert (await api.order("A-1", 1)).status_code == 201
    await expect(api, api.order("A-1", 2), 409, "DUPLICATE_ORDER_NO")


@pytest.mark.parametrize("body", [b"{not json", b"[]", b'{"client_order_no": "A-1"}', b"\xff\xfe",
                                  b'{"client_order_no": "A 1", "sku": "x", "quantity": 1}',
                                  b'{"client_order_no": "A-1", "sku": "x", "quantity": 1, "extra": 1}'])
async def test_malformed_json(api: ApiShop, body: bytes) -> None:
    await expect(api, api.call("POST", "/api/v1/orders", body=body), 400, "MALFORMED")


async def test_body_over_64_kib(api: ApiShop) -> None:
    body = json.dumps({"client_order_no": "A-1", "sku": api.sku_slug, "quantity": 1,
                       "callback_url": "https://x.example/" + "a" * 70_000}).encode()
    await expect(api, api.call("POST", "/api/v1/orders", body=body), 413, "BODY_TOO_LARGE")


@pytest.mark.parametrize("url", ["http://127.0.0.1/cb", "http://10.1.2.3/cb", "http://169.254.169.254/latest",
                                 "http://localhost:8080/cb", "http://[::1]/cb", "ftp://example.com/cb",
                                 "http://user:pw@example.com/cb"])
async def test_callback_url_to_a_private_address(api: ApiShop, url: str) -> None:
    await expect(api, api.order("A-1", 1, callback_url=url), 422, "BAD_CALLBACK_URL")


async def test_idempotency_key_with_another_body(api: ApiShop) -> None:
    assert (await api.order("A-1", 1, idem="k-1")).status_code == 201
    await expect(api, api.order("A-2", 1, idem="k-1"), 422, "IDEMPOTENCY_KEY_REUSED")


async def test_unknown_route_and_order(api: ApiShop) -> None:
    await expect(api, api.call("GET", "/api/v1/nothing"), 404, "NOT_FOUND")
    await expect(api, api.call("GET", "/api/v1/orders/NOPE"), 404, "UNKNOWN_ORDER")



async def test_rate_limit_per_key(tmp_path: Path) -> None:
    # given keys limited to a burst of 3 requests
    api, _ = await open_api_shop(tmp_path, "sqlite", limits={"rate_per_s": 0.001, "burst": 3})
    other = await api.keys.create("other", ["orders:read"])
    try:
        # when one key sends 4 requests, then the 4th is refused; another key is not affected
        answers = [(await api.call("GET", "/api/v1/wallet")).status_code for _ in range(4)]
        assert answers == [200, 200, 200, 429]
        second = await api.call("GET", "/api/v1/wallet", signer=Signer(other.client.key_id, other.secret))
        assert second.status_code == 200
    finally:
        await close_api_shop(api, None)


async def test_nonce_of_a_placed_order_is_spent(api: ApiShop) -> None:
    # the nonce of an order without Idempotency-Key is claimed inside the order's own transaction
    body = json.dumps({"client_order_no": "A-0", "sku": api.sku_slug, "quantity": 1}).encode()
    first = api.signer.headers("POST", "/api/v1/orders", "", body, nonce="n-spent-0001")
    assert (await api.http.post("/api/v1/orders", content=body, headers=first)).status_code == 201
    other = json.dumps({"client_order_no": "A-1", "sku": api.sku_slug, "quantity": 1}).encode()
    again = api.signer.headers("POST", "/api/v1/orders", "", other, nonce="n-spent-0001")
    await expect(api, api.http.post("/api/v1/orders", content=other, headers=again), 401, "NONCE_REUSED")


async def test_nonce_of_a_refused_order_is_spent_too(api: ApiShop) -> None:
    body = json.dumps({"client_order_no": "A-0", "sku": api.sku_slug, "quantity": 20}).encode()
    refused = api.signer.headers("POST", "/api/v1/orders", "", body, nonce="n-refused-001")
    answer = await api.http.post("/api/v1/orders", content=body, headers=refused)
    assert answer.json()["code"] == "INSUFFICIENT_BALANCE"
    replay = api.signer.headers("GET", "/api/v1/wallet", nonce="n-refused-001")
    await expect(api, api.http.get("/api/v1/wallet", headers=replay), 401, "NONCE_REUSED")


async def test_another_clients_order_is_unknown(api: ApiShop) -> None:
    assert (await api.order("A-1", 1)).status_code == 201
    other = await api.keys.create("other", ["orders:read", "orders:write"])
    signer = Signer(other.client.key_id, other.secret)
    await expect(api, api.call("GET", "/api/v1/orders/A-1", signer=signer), 404, "UNKNOWN_ORDER")
    await expect(api, api.call("POST", "/api/v1/orders/A-1/refund-request", {"reason": "mine"}, signer=signer),
                 404, "UNKNOWN_ORDER")


@pytest.mark.parametrize(("gap_s", "left"), [(0.0, 0), (3600.0, 1)])
async def test_expired_nonces_are_pruned_every_n_requests_at_most_once_a_gap(
        api: ApiShop, monkeypatch: pytest.MonkeyPatch, gap_s: float, left: int) -> None:
    # given an expired claim-once key, pruning every 3 signed requests and at most once per gap
    monkeypatch.setattr(api_clients, "PRUNE_EVERY", 3)
    monkeypatch.setattr(api_clients, "PRUNE_GAP_S", gap_s)
    now = api.keys.clock()
    await api.shop.store.claim_once("api.nonce", "kk:old", now - timedelta(seconds=1), now - timedelta(minutes=20))
    # when 3 requests are served, then the expired key is gone unless the gap since the start has not passed
    for _ in range(3):
        assert (await api.call("GET", "/api/v1/wallet")).status_code == 200
    assert api.served_keys is not None
    await api.served_keys.pruned()  # the prune runs beside the requests, not inside one
    assert await api.shop.store.prune_once_keys(now) == left
