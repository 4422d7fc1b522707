"""`kamibot distributors …`: distributors from the shell, as the merchant's chat commands do it (handlers/
distributor_admin.py): list, add (linked to an API client or not), the commission pass once (accruals for delivered
orders, reversals for refunded ones), and a month's statement as CSV. Every change audited; refusals are printed
in the shop's default language and change nothing."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.composition import Shop
from fulfillment.api_clients import ApiKeys
from fulfillment.distributor_statement import statement
from fulfillment.distributors import CommissionPass, DistributorDesk, DistributorRefused
from locales import Translator

Handlers = dict[str, Callable[[Shop, argparse.Namespace], Awaitable[int]]]


def register(sub: Any, handlers: Handlers) -> None:
    """Add the `distributors` command to the CLI's subparsers and its handlers to the CLI's table."""
    cmds = sub.add_parser("distributors", help="distributors: price lists, wallets, commission").add_subparsers(
        dest="distributors_command", required=True)
    cmds.add_parser("list", help="distributors, their rates and payable balances")
    add = cmds.add_parser("add", help="a new distributor (its referral payload is ref_NAME)")
    add.add_argument("name")
    add.add_argument("--client", default="", help="the API client (name or key id) it buys as")
    cmds.add_parser("accrue", help="run the commission pass once (accruals and reversals)")
    st = cmds.add_parser("statement", help="a month's statement as CSV")
    st.add_argument("name")
    st.add_argument("period", help="YYYY-MM, in the shop's display time zone")
    st.add_argument("--out", default="-", help="file to write (default: stdout)")
    handlers.update({"distributors.list": _guard(_list), "distributors.add": _guard(_add),
                     "distributors.accrue": _guard(_accrue), "distributors.statement": _guard(_statement)})


def _guard(fn: Callable[[Shop, argparse.Namespace], Awaitable[int]]
           ) -> Callable[[Shop, argparse.Namespace], Awaitable[int]]:
    async def run(shop: Shop, args: argparse.Namespace) -> int:
        try:
            return await fn(shop, args)
        except DistributorRefused as exc:
            tr = Translator(shop.settings.default_language)
            print(f"kamibot: {tr(tr.default, exc.message_id, **exc.params)}", file=sys.stderr)
            return 2
    return run


def _desk(shop: Shop) -> DistributorDesk:
    return DistributorDesk(shop.store, ApiKeys(shop.store, shop.vault))


async def _list(shop: Shop, args: argparse.Namespace) -> int:
    for d in await shop.store.distributors():
        payable = " ".join(f"{c}={v}" for c, v in (await shop.store.commission_balances(d.id)).items()) or "-"
        print(f"{d.name}\tref_{d.ref_code}\tclient={d.api_client_id or '-'}\tdiscount={d.discount_bp}bp"
              f"\tcommission={d.commission_bp}bp\tpayable {payable}")
    return 0


async def _add(shop: Shop, args: argparse.Namespace) -> int:
    d = await _desk(shop).add(args.name, args.client)
    await shop.store.audit("cli", "cli", "distributor.add", f"{d.name} client={d.api_client_id or '-'}",
                           datetime.now(UTC))
    print(f"{d.name}: referral payload ref_{d.ref_code}")
    return 0


async def _accrue(shop: Shop, args: argparse.Namespace) -> int:
    total = 0
    while True:  # a full batch means more may be waiting
        written = await CommissionPass(shop.store).run_once()
        total += written
        if not written:
            break
    print(f"{total} commission lines written")
    return 0


async def _statement(shop: Shop, args: argparse.Namespace) -> int:
    desk = _desk(shop)
    st = await statement(shop.store, await desk.find(args.name), args.period, shop.settings.display_timezone)
    if args.out == "-":
        sys.stdout.write(st.csv().decode())
    else:
        await asyncio.to_thread(Path(args.out).write_bytes, st.csv())
    return 0
