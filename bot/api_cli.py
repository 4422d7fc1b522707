"""`kamibot api-keys …`: order-API clients (create with the secret shown once, list, revoke) and their prepaid
wallets (`wallet NAME +AMOUNT`: a merchant's top-up or correction, one wallet ledger line). Every change audited."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from bot.composition import Shop
from fulfillment.api_clients import SCOPES, ApiKeys
from fulfillment.errors import BadInput

Handlers = dict[str, Callable[[Shop, argparse.Namespace], Awaitable[int]]]


def register(sub: Any, handlers: Handlers) -> None:
    """Add the `api-keys` command to the CLI's subparsers and its handlers to the CLI's table."""
    keys = sub.add_parser("api-keys", help="order-API clients and their wallets").add_subparsers(
        dest="api-keys_command", required=True)
    create = keys.add_parser("create", help="new API client: prints its key id and secret (shown once)")
    create.add_argument("name")
    create.add_argument("--scopes", required=True, help=f"comma-separated: {','.join(SCOPES)}")
    keys.add_parser("list", help="API clients, scopes and wallet balances")
    revoke = keys.add_parser("revoke", help="revoke a client's key (name or key id)")
    revoke.add_argument("client")
    wallet = keys.add_parser("wallet", help="show a wallet, or move it: +AMOUNT (top-up) / -AMOUNT (minor units)")
    wallet.add_argument("client")
    wallet.add_argument("amount", nargs="?", default="")
    wallet.add_argument("--currency", default="CNY")
    wallet.add_argument("--note", default="")
    price = keys.add_parser("price", help="the client's own price of a SKU (minor units), or --clear")
    price.add_argument("client")
    price.add_argument("sku", help="SKU slug or id")
    price.add_argument("amount", nargs="?", default="")
    price.add_argument("--currency", default="CNY")
    price.add_argument("--clear", action="store_true", help="sell at the api channel price again")
    handlers.update({"api-keys.create": _create, "api-keys.list": _list, "api-keys.revoke": _revoke,
                     "api-keys.wallet": _wallet, "api-keys.price": _price})


async def _audit(shop: Shop, action: str, detail: str) -> None:
    await shop.store.audit("cli", "cli", action, detail, datetime.now(UTC))


async def _create(shop: Shop, args: argparse.Namespace) -> int:
    new = await ApiKeys(shop.store, shop.vault).create(args.name, args.scopes.split(","))
    await _audit(shop, "api_key.create", f"{new.client.name} {new.client.key_id} {','.join(new.client.scopes)}")
    print(f"name:    {new.client.name}\nkey id:  {new.client.key_id}\nsecret:  {new.secret}\n"
          f"scopes:  {','.join(new.client.scopes)}\n(the secret is shown only now: store it safely)")
    return 0


async def _list(shop: Shop, args: argparse.Namespace) -> int:
    keys = ApiKeys(shop.store, shop.vault)
    for c in await keys.clients():
        balances = " ".join(f"{ccy}={amount}" for ccy, amount in (await keys.wallet(c.id)).items()) or "-"
        state = f"revoked {c.revoked_at:%Y-%m-%d}" if c.revoked_at else "live"
        print(f"{c.name}\t{c.key_id}\t{','.join(c.scopes)}\t{state}\t{balances}")
    return 0


async def _revoke(shop: Shop, args: argparse.Namespace) -> int:
    done = await ApiKeys(shop.store, shop.vault).revoke(args.client)
    if done:
        await _audit(shop, "api_key.revoke", args.client)
    print("revoked" if done else "already revoked")
    return 0


async def _wallet(shop: Shop, args: argparse.Namespace) -> int:
    keys = ApiKeys(shop.store, shop.vault)
    client = await keys.find(args.client)
    if args.amount:
        raw = str(args.amount)
        sign = -1 if raw.startswith("-") else 1
        digits = raw.lstrip("+-")
        if not digits.isascii() or not digits.isdigit():
            raise BadInput("amount: +N or -N in minor units")
        line = await keys.top_up(client.key_id, sign * int(digits), args.currency, args.note)
        await _audit(shop, "api_wallet.adjust", f"{client.name} {line.currency} {line.amount:+d} {args.note[:80]}")
    for ccy, amount in (await keys.wallet(client.id)).items():
        print(f"{ccy}\t{amount}")
    for ln in await keys.wallet_lines(client.id, 10):
        print(f"  {ln.at:%Y-%m-%d %H:%M:%S}\t{ln.kind}\t{ln.amount:+d}\t= {ln.balance_after}\t{ln.note}")
    return 0


async def _price(shop: Shop, args: argparse.Namespace) -> int:
    sku = await shop.catalog.find_sku(args.sku)
    if not args.clear and not (str(args.amount).isascii() and str(args.amount).isdigit()):
        raise BadInput("amount: a whole number of minor units, or --clear")
    amount = None if args.clear else int(args.amount)
    client = await ApiKeys(shop.store, shop.vault).set_price(args.client, sku.id, amount, args.currency)
    shown = "api channel price" if amount is None else f"{args.currency} {amount}"
    await _audit(shop, "api_price.set", f"{client.name} {sku.slug} {shown}")
    print(f"{client.name} {sku.slug}: {shown}")
    return 0
