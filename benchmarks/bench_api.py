"""Signed `POST /api/v1/orders` for an in-stock SKU at 50 concurrent clients, through the real app as `kamibot run`
serves it (bot/api.py's ApiFront before its Starlette routes, the seconds in the HTTP histogram; signature, nonce,
the one-transaction order verb with its wallet debit, codes decrypted into the answer) in one process, each request
handed to the ASGI app as uvicorn would (the client's signing is not timed), beside bench_allocation.py's full path
(`PaymentInbox.receive`, 1 process) in the same run and backend.

    python benchmarks/bench_api.py [--orders 10000] [--rounds 3] [--no-pg]

Prints one JSON line. Targets (issue 15): API throughput ≥ 50% of the allocation full path, p99 < 50 ms, signature
verification < 50 µs per request. Each backend runs --rounds rounds on fresh databases, the two paths in alternating
order; the ratio is the median of the rounds' ratios (`*_api_ratios` lists them), p99 the worst round's (`*_p99s_ms`
lists them). 10,000 orders a round: at 2,000 the allocation run lasted 0.15 s on SQLite, and one round's ratio
ranged 0.41-0.69 in one hour on the same host (at 10,000: 0.51-0.63).

What is compared: both sides run one process with 50 concurrent callers on the same backend. The allocation path
pays orders reserved before its clock starts (bench_allocation.prepare); an API order is reserved, debited, paid,
allocated and linked inside its one transaction, behind the ASGI app, the signature, the nonce and the JSON answer
with decrypted codes, so it does strictly more per order. The clients' signing is done before the clock starts.
50 closed-loop clients at p99 < 50 ms need a mean latency under 50 ms, i.e. more than 1000 orders/s in the process.

Warm-up: the first WARMUP orders (the same clients, the same path) run before the clock starts and are not counted:
they open the database connections and prepare the statements and functions once, which a running shop has long
done; at 2000 orders they were most of the slowest 1%. Then, as `kamibot run` does once started, gc.collect() and
gc.freeze(): without them two full collections (26 and 46 ms, walking the whole process) landed in the timed run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_allocation  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.types import ASGIApp  # noqa: E402

from bot.api import build_api  # noqa: E402
from bot.composition import build_shop  # noqa: E402
from bot.metrics import ShopMetrics  # noqa: E402
from bot.settings import Settings  # noqa: E402
from fulfillment.api_clients import ApiKeys  # noqa: E402
from fulfillment.api_signing import Signer, matches  # noqa: E402
from storage.records import Price, Product, Sku  # noqa: E402

CONCURRENCY = 50
WARMUP = 200  # orders before the clock starts (see the docstring)


def verify_us(rounds: int = 20_000) -> float:
    body = json.dumps({"client_order_no": "A-1", "sku": "bench-1", "quantity": 1}).encode()
    headers = Signer("kk_bench", "ks_" + "x" * 43).headers("POST", "/api/v1/orders", "", body)
    args = ("ks_" + "x" * 43, headers["x-kami-signature"], "POST", "/api/v1/orders", "", body,
            headers["x-kami-timestamp"], headers["x-kami-nonce"])
    start = time.perf_counter()
    for _ in range(rounds):
        assert matches(*args)
    return (time.perf_counter() - start) / rounds * 1e6


async def asgi_post(app: ASGIApp, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
    """One request straight into the ASGI app, as uvicorn hands it over (no HTTP client in the measurement)."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(k.encode(), v.encode()) for k, v in headers.items()]
             + [(b"content-length", str(len(body)).encode())],
             "client": ("127.0.0.1", 50000), "server": ("bench", 80)}
    sent = False
    status, chunks = 0, []

    async def receive() -> dict[str, object]:
        nonlocal sent
        if sent:
            await asyncio.Event().wait()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, object]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])  # type: ignore[call-overload]
        elif message["type"] == "http.response.body":
            chunks.append(bytes(message.get("body", b"")))  # type: ignore[arg-type]

    await app(scope, receive, send)  # type: ignore[arg-type]
    return status, b"".join(chunks)


async def api_path(data_dir: Path, db_url: str, n: int) -> tuple[float, float, float]:
    """(orders/s, p50 ms, p99 ms) of n signed orders at 50 concurrent clients."""
    settings = Settings(data_dir=data_dir, database_url=db_url, risk={"enabled": False},
                        api={"rate_per_s": 1e9, "burst": 10**9})
    shop = await build_shop(settings)
    store = shop.store
    cat = await store.upsert_category("bench", "Bench", "测试", 0)
    product = await store.upsert_product(Product(0, cat.id, "bench", "Bench", "测试"))
    pool = await store.upsert_pool("bench", "bench", 0)
    sku = await store.upsert_sku(Sku(0, product.id, pool.id, "bench-1", "1", "1", max_qty=5))
    await store.set_price(Price(sku.id, "api", "CNY", 100))
    batch = await store.create_batch(pool.id, "bench", 10, "CNY", "bench")
    total = n + WARMUP
    for i in range(0, total, 5000):
        await store.insert_codes(batch, pool.id, [shop.vault.seal(f"B-{secrets.token_hex(8)}")
                                                  for _ in range(min(5000, total - i))])
    keys = ApiKeys(store, shop.vault)
    key = await keys.create("bench", ["orders:write"])
    await keys.top_up(key.client.key_id, 100 * total, "CNY", "bench")
    runtime = build_api(shop)
    # as `kamibot run` serves it: API requests in front of the app, their seconds in the HTTP histogram
    app = runtime.front(Starlette(routes=runtime.routes()), ShopMetrics(shop).http)
    signer = Signer(key.client.key_id, key.secret)
    # the clients' work (body, signature) is done before the clock starts: it shares this process's CPU with the
    # server, and the allocation path it is compared with has no client either (the signature window is 300 s)
    requests = []
    for i in range(total):
        body = json.dumps({"client_order_no": f"B-{i}", "sku": "bench-1", "quantity": 1}).encode()
        requests.append((signer.headers("POST", "/api/v1/orders", "", body), body))
    latencies: list[float] = []

    async def client(queue: Iterator[tuple[dict[str, str], bytes]]) -> None:
        for headers, body in queue:
            t0 = time.perf_counter()
            status, answer = await asgi_post(app, "/api/v1/orders", headers, body)
            latencies.append(time.perf_counter() - t0)
            assert status == 201, answer

    warm = iter(requests[:WARMUP])
    await asyncio.gather(*(client(warm) for _ in range(CONCURRENCY)))
    latencies.clear()
    gc.collect()  # as `kamibot run` does once started (bot/server.py): full collections stop walking the shop
    gc.freeze()
    queue = iter(requests[WARMUP:])
    start = time.perf_counter()
    await asyncio.gather(*(client(queue) for _ in range(CONCURRENCY)))
    elapsed = time.perf_counter() - start
    gc.unfreeze()
    await shop.close()
    latencies.sort()
    return n / elapsed, latencies[len(latencies) // 2] * 1e3, latencies[int(len(latencies) * 0.99)] * 1e3


def _backend(base: Path, name: str, pg: bool, n: int, rounds: int, figures: dict[str, object]) -> None:
    """`rounds` rounds, each on fresh databases (a new SQLite file each; a new PostgreSQL database with `pg`): the
    allocation path and the API path one after the other, in alternating order (a host that speeds up or slows down
    during the run favours neither). Rates and ratios are the rounds' medians, p99 the worst round's."""
    allocs: list[dict[str, float]] = []
    apis: list[tuple[float, float, float]] = []
    for r in range(rounds):
        data = base / f"{name}-{r}"  # one vault key file per database
        pg_name = ""
        if pg:
            url, pg_name = asyncio.run(bench_allocation.pg_database())
        try:
            alloc_url = url if pg else f"sqlite:///{data / 'alloc.db'}"
            api_data = data if pg else base / f"{name}-{r}-api"
            api_url = url if pg else f"sqlite:///{api_data / 'api.db'}"
            events = asyncio.run(bench_allocation.prepare(data, alloc_url, n))
            for kind in ("alloc", "api") if r % 2 == 0 else ("api", "alloc"):
                if kind == "alloc":
                    allocs.append(bench_allocation.full_path_run(alloc_url, data, events, 1))
                else:
                    apis.append(asyncio.run(api_path(api_data, api_url, n)))
        finally:
            if pg_name:
                asyncio.run(bench_allocation.drop_database(pg_name))
    ratios = [api[0] / alloc["per_s"] for alloc, api in zip(allocs, apis, strict=True)]
    figures.update({f"{name}_alloc_full_per_s": round(median(a["per_s"] for a in allocs)),
                    f"{name}_alloc_full_p50_ms": round(median(a["p50_ms"] for a in allocs), 1),
                    f"{name}_alloc_full_p99_ms": round(max(a["p99_ms"] for a in allocs), 1),
                    f"{name}_api_per_s": round(median(a[0] for a in apis)),
                    f"{name}_api_ratio": round(median(ratios), 2),
                    f"{name}_api_ratios": [round(x, 2) for x in ratios],
                    f"{name}_api_p50_ms": round(median(a[1] for a in apis), 1),
                    f"{name}_api_p99_ms": round(max(a[2] for a in apis), 1),
                    f"{name}_api_p99s_ms": [round(a[2], 1) for a in apis]})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--orders", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds per backend (medians reported)")
    ap.add_argument("--no-pg", action="store_true")
    args = ap.parse_args()
    figures: dict[str, object] = {"orders": args.orders, "rounds": args.rounds, "verify_us": round(verify_us(), 2)}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        _backend(base, "sqlite", False, args.orders, args.rounds, figures)
        if not args.no_pg:
            _backend(base, "pg", True, args.orders, args.rounds, figures)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
