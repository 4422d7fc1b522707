"""`kamibot suppliers add|list|test|balance`: suppliers configured in the database.

The credential (kashangwl key, acg-faka app_key, kamibot API secret) is read from the environment variable
KAMIBOT_SUPPLIER_SECRET or, without it, from the first line of stdin - never from the command line, where `ps` and
shell history would show it.
It is sealed under the vault key before it reaches the database and is never printed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fulfillment.suppliers.amounts import minor_to_yuan
from fulfillment.suppliers.credentials import seal_secret
from fulfillment.suppliers.errors import SupplierError
from fulfillment.suppliers.registry import build_supplier
from storage.records_supply import SUPPLIER_PROTOCOLS, SupplierRecord

if TYPE_CHECKING:
    from bot.composition import Shop

SECRET_ENV = "KAMIBOT_SUPPLIER_SECRET"


def add_supplier_commands(sub: Any) -> None:
    sup = sub.add_parser("suppliers", help="upstream suppliers").add_subparsers(dest="suppliers_command",
                                                                                 required=True)
    add = sup.add_parser("add", help=f"add or update a supplier (secret from ${SECRET_ENV} or stdin)")
    add.add_argument("name")
    add.add_argument("--protocol", choices=SUPPLIER_PROTOCOLS, required=True)
    add.add_argument("--url", required=True, help="the supplier's base URL")
    add.add_argument("--account", required=True, help="kashangwl customer_id / acg-faka app_id / kamibot API key id")
    add.add_argument("--notify-url", default="", help="our callback URL (…/suppliers/NAME/notify)")
    add.add_argument("--products", default="", help="comma-separated product ids to follow")
    add.add_argument("--connect-timeout-ms", type=int, default=3000)
    add.add_argument("--read-timeout-ms", type=int, default=10_000)
    add.add_argument("--breaker-failures", type=int, default=5,
                     help="K: consecutive failures that open the breaker, and the most purchases in flight at once")
    add.add_argument("--breaker-cool-down", type=int, default=30, help="seconds")
    add.add_argument("--low-balance", type=int, default=0, help="alert under this balance, minor units")
    add.add_argument("--currency", default="CNY")
    add.add_argument("--inactive", action="store_true")
    sup.add_parser("list", help="configured suppliers (never their secrets)")
    for verb, text in (("test", "call the supplier: balance and followed products"), ("balance", "its balance")):
        sup.add_parser(verb, help=text).add_argument("name")


def _read_secret() -> str:
    secret = os.environ.get(SECRET_ENV, "")
    if not secret:
        if sys.stdin.isatty():
            print("supplier secret (one line): ", end="", file=sys.stderr, flush=True)
        secret = sys.stdin.readline()
    secret = secret.strip()
    if not secret:
        raise ValueError(f"no supplier secret: set ${SECRET_ENV} or give it on stdin")
    return secret


async def _add(shop: Shop, args: argparse.Namespace) -> int:
    if not args.url.startswith(("https://", "http://")):
        raise ValueError("--url must be an http(s) URL")
    if min(args.connect_timeout_ms, args.read_timeout_ms, args.breaker_failures) < 1 or args.breaker_cool_down < 0 \
            or args.low_balance < 0:
        raise ValueError("timeouts and breaker failures must be at least 1, cool-down and low balance at least 0")
    record = SupplierRecord(
        name=args.name, protocol=args.protocol, base_url=args.url.rstrip("/"), account=args.account,
        secret=seal_secret(shop.vault, args.name, _read_secret()), notify_url=args.notify_url,
        product_ids=tuple(p.strip() for p in args.products.split(",") if p.strip()),
        connect_timeout_ms=args.connect_timeout_ms, read_timeout_ms=args.read_timeout_ms,
        breaker_failures=args.breaker_failures, breaker_cool_down_s=args.breaker_cool_down,
        low_balance=args.low_balance, currency=args.currency, active=not args.inactive)
    now = datetime.now(UTC)
    saved = await shop.store.save_supplier(record, now)
    await shop.store.audit("cli", "cli", "supplier.save", f"{saved.name} {saved.protocol} {saved.base_url}", now)
    print(f"supplier {saved.name} saved ({saved.protocol}, {saved.base_url})")
    return 0


async def _list(shop: Shop, args: argparse.Namespace) -> int:
    for s in await shop.store.suppliers():
        products = ",".join(s.product_ids) or "-"
        print(f"{s.name}: {s.protocol} {s.base_url} account {s.account} products {products} "
              f"timeouts {s.connect_timeout_ms}/{s.read_timeout_ms} ms breaker {s.breaker_failures}/"
              f"{s.breaker_cool_down_s}s{'' if s.active else ' [inactive]'}")
    return 0


async def _supplier(shop: Shop, name: str) -> Any:
    record = await shop.store.supplier_by_name(name)
    if record is None:
        raise ValueError(f"no supplier named {name!r} (kamibot suppliers list)")
    return build_supplier(record, shop.vault)


async def _balance(shop: Shop, args: argparse.Namespace) -> int:
    supplier = await _supplier(shop, args.name)
    try:
        money = await supplier.balance()
    except SupplierError as exc:
        print(f"{args.name}: {exc.kind} {exc.detail}", file=sys.stderr)
        return 1
    finally:
        await supplier.aclose()
    print(f"{args.name}: balance {minor_to_yuan(money.amount)} {money.currency}")
    return 0


async def _test(shop: Shop, args: argparse.Namespace) -> int:
    supplier = await _supplier(shop, args.name)
    try:
        money = await supplier.balance()
        products = await supplier.catalogue()
    except SupplierError as exc:
        print(f"{args.name}: FAILED {exc.kind} {exc.detail}", file=sys.stderr)
        return 1
    finally:
        await supplier.aclose()
    print(f"{args.name}: ok, balance {minor_to_yuan(money.amount)} {money.currency}, {len(products)} products")
    for p in products:
        print(f"  {p.product_id} {p.name}: cost {minor_to_yuan(p.cost.amount)} {p.cost.currency} {p.stock.value}"
              f" {p.product_type.value}")
    return 0


SUPPLIER_HANDLERS: dict[str, Callable[[Shop, argparse.Namespace], Awaitable[int]]] = {
    "suppliers.add": _add, "suppliers.list": _list, "suppliers.test": _test, "suppliers.balance": _balance,
}
