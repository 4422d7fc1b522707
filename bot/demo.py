"""`kamibot demo`: an offline shop in the terminal, seeded on first run, on the default SQLite file.

Besides codes of its own, the demo shop sells from a SIMULATED supplier (fulfillment/suppliers/simulated.py, kept
in this process, no database row, nothing real): a phone-credit top-up (the dialog asks for a mobile number) and a
code bought on demand. Its supply jobs run in the background while the demo runs.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
import tempfile
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from bot.composition import Shop, build_context
from bot.supply import Supply, build_supply
from fulfillment.catalog import ShopFile
from fulfillment.importer import ImportSource, import_codes
from handlers.console.adapter import CHANNEL, ConsoleChannel, ConsoleChat
from handlers.context import ShopContext
from handlers.router import Conversation
from storage.records_supply import SealedSecret, SkuSource, SkuSourcing, SupplierRecord

MERCHANT_ID = "merchant"
CUSTOMER_ID = "customer"
SIMULATED_SUPPLIER = SupplierRecord(name="demo-sim", protocol="simulated", base_url="sim://in-process",
                                    account="demo", secret=SealedSecret("none", b"", b""))
#: demo SKU slug → (simulated product, most one unit may cost): every one sourced on demand
SIMULATED_SOURCES = {"sim-mobile-10": ("mobile-10", 1000), "sim-mobile-30": ("mobile-30", 3000),
                     "sim-video-week": ("video-week", 300)}


async def seed_demo(shop: Shop) -> bool:
    """Seed the demo catalogue and codes once; later runs keep what the shop has sold."""
    if await shop.store.categories():
        return False
    import tomllib

    text = resources.files("bot").joinpath("demo_shop.toml").read_text(encoding="utf-8")
    await shop.catalog.apply(ShopFile.model_validate(tomllib.loads(text)))
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"

    def code(prefix: str) -> str:
        return prefix + "-" + "-".join("".join(secrets.choice(alphabet) for _ in range(4)) for _ in range(3))

    with tempfile.TemporaryDirectory() as tmp:
        crystals = Path(tmp) / "crystals.txt"
        crystals.write_text("\n".join(code("GI60") for _ in range(30)) + "\n", encoding="utf-8")
        video = Path(tmp) / "video.csv"
        video.write_text("code,uses,note\n" + "".join(f"{code('VIP')},3,demo\n" for _ in range(4)), encoding="utf-8")
        for pool_slug, path, kind, cost in (("genshin-60", crystals, "txt", 420), ("video-month", video, "csv", 900)):
            pool = await shop.catalog.find_pool(pool_slug)
            await import_codes(shop.store, shop.vault, pool, ImportSource(path, kind), supplier="demo-supplier",
                               unit_cost=cost)
    for slug, (product_id, max_cost) in SIMULATED_SOURCES.items():
        sku = await shop.catalog.find_sku(slug)
        await shop.store.save_sku_sourcing(SkuSourcing(sku.id, own=True, sources=(SkuSource(
            SIMULATED_SUPPLIER.name, product_id),), max_unit_cost=max_cost, on_demand=True))
    return True


async def start_supply(shop: Shop, ctx: ShopContext) -> Supply:
    """The supply side with the simulated supplier, its catalogue read once (the storefront shows its stock)."""
    supply = build_supply(shop, holder="demo")
    supply.registry.register_local(SIMULATED_SUPPLIER)
    supply.resolve_every = 1.0  # the simulated supplier answers a top-up within a second or two
    supply.attach(ctx)
    await supply.sync.run_once()
    return supply


def make_context(shop: Shop, merchants: set[str]) -> ShopContext:
    return build_context(shop, {CHANNEL: merchants})


async def run_demo(shop: Shop, merchant: bool, language: str = "") -> None:
    interactive = sys.stdin.isatty()
    write = _rich_writer() if interactive else (lambda line: print(line, flush=True))
    seeded = await seed_demo(shop)
    ctx = make_context(shop, {MERCHANT_ID, *shop.settings.merchant_ids})
    shop.channels[CHANNEL] = ConsoleChannel(ctx, write, shop.settings.data_dir / "deliveries")
    supply = await start_supply(shop, ctx)
    from bot.jobs import JobStatus, run_jobs

    stop = asyncio.Event()
    jobs = asyncio.create_task(run_jobs(shop, stop, JobStatus(), extra=supply.jobs()))
    try:
        await _chat(shop, ctx, merchant, language, write, interactive, seeded)
    finally:
        stop.set()
        await jobs
        await supply.aclose()


async def _chat(shop: Shop, ctx: ShopContext, merchant: bool, language: str, write: Callable[[str], None],
                interactive: bool, seeded: bool) -> None:
    from fulfillment.payments import TestPaymentProvider

    provider = shop.providers["test"]
    assert isinstance(provider, TestPaymentProvider)
    chat = ConsoleChat(ctx, Conversation(ctx), provider, MERCHANT_ID if merchant else CUSTOMER_ID, write,
                       shop.settings.data_dir / "deliveries", language)
    if interactive:
        write("kamibot demo — " + ("seeded a demo catalogue; " if seeded else "") +
              "type a number to press a button, /start for the menu, Ctrl-D to quit")
    await chat.say("/start")
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, _prompt if interactive else sys.stdin.readline)
        if not line:
            break
        await chat.say(line)


def _prompt() -> str:
    try:
        return input("> ") + "\n"
    except EOFError:
        return ""


def _rich_writer() -> Callable[[str], None]:
    from rich.console import Console

    console = Console(highlight=False)
    return lambda line: console.print(line, markup=False)
