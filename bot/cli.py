"""The `kamibot` command line (same as `python -m bot`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bot import api_cli, distributors_cli, reconcile_cli, report_cli
from bot.composition import Shop, build_shop, open_store
from bot.logs import configure_logging
from bot.settings import Settings
from bot.suppliers_cli import SUPPLIER_HANDLERS, add_supplier_commands
from fulfillment.catalog import ShopFile, sku_spec
from fulfillment.errors import ShopError, VaultError
from fulfillment.importer import CodeImporter, ImportSource, detect_kind, parse_unit_cost
from fulfillment.rotation import rotate_keys
from locales import Translator


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kamibot", description="Chat-first shop for virtual goods")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="serve HTTP and run background jobs")
    demo = sub.add_parser("demo", help="offline demo shop in the terminal")
    demo.add_argument("--merchant", action="store_true", help="chat as the merchant (admin commands)")
    demo.add_argument("--lang", default="", help="zh_CN or en (default: KAMIBOT_DEFAULT_LANGUAGE)")
    tg = sub.add_parser("telegram").add_subparsers(dest="telegram_command", required=True)
    hook = tg.add_parser("set-webhook", help="point Telegram at URL (…/telegram/webhook) with the secret token")
    hook.add_argument("url")
    wx = sub.add_parser("wechat").add_subparsers(dest="wechat_command", required=True)
    wx_menu = wx.add_parser("menu", help="the Official Account custom menu").add_subparsers(dest="menu_command",
                                                                                          required=True)
    wx_menu.add_parser("sync", help="create the menu (Shop, My orders, Help) with POST /cgi-bin/menu/create")
    db = sub.add_parser("db").add_subparsers(dest="db_command", required=True)
    db.add_parser("upgrade", help="apply pending migrations")
    backup = sub.add_parser("backup", help="a consistent copy of the SQLite shop while it sells (not the vault key)")
    backup.add_argument("file")
    restore = sub.add_parser("restore", help="put a backup in place, into an empty data dir only")
    restore.add_argument("file")
    keys = sub.add_parser("keys").add_subparsers(dest="keys_command", required=True)
    keys.add_parser("rotate", help="new vault key; re-encrypt every code in batches")
    codes = sub.add_parser("codes").add_subparsers(dest="codes_command", required=True)
    imp = codes.add_parser("import", help="import codes from a .txt/.csv file or - for stdin")
    imp.add_argument("target", help="pool slug, or SKU slug/id (its pool)")
    imp.add_argument("file")
    imp.add_argument("--format", choices=["txt", "csv"], default=None)
    imp.add_argument("--supplier", default="")
    imp.add_argument("--cost", default="0", help="unit cost per code use, integer minor units")
    imp.add_argument("--currency", default="CNY")
    imp.add_argument("--json", action="store_true", help="print the summary as one JSON line")
    codes.add_parser("stock", help="stock per pool and SKU")
    cat = sub.add_parser("catalog").add_subparsers(dest="catalog_command", required=True)
    load = cat.add_parser("load", help="create/update categories, pools, products and SKUs from a TOML file")
    load.add_argument("file")
    cat.add_parser("list", help="list products, SKUs and prices")
    price = cat.add_parser("price", help="set a SKU's price on a channel")
    price.add_argument("sku")
    price.add_argument("channel", choices=["console", "telegram", "wechat", "api"])
    price.add_argument("amount", help="integer minor units (fen, Stars)")
    sku = cat.add_parser("sku", help="create or update a SKU")
    sku.add_argument("slug")
    sku.add_argument("--product", required=True)
    sku.add_argument("--pool", required=True)
    sku.add_argument("--name-en", required=True)
    sku.add_argument("--name-zh", required=True)
    sku.add_argument("--units", type=int, default=1)
    sku.add_argument("--min", type=int, default=1)
    sku.add_argument("--max", type=int, default=10)
    sku.add_argument("--limit", type=int, default=0)
    sku.add_argument("--target", default=None, metavar="mobile|re:PATTERN",
                     help="a direct-recharge SKU: the customer gives a mainland mobile number or an id matching "
                          "PATTERN")
    product = cat.add_parser("product", help="create or update a product (and its category / pool)")
    product.add_argument("slug")
    product.add_argument("--category", required=True)
    product.add_argument("--name-en", required=True)
    product.add_argument("--name-zh", required=True)
    product.add_argument("--instructions-en", default="")
    product.add_argument("--instructions-zh", default="")
    product.add_argument("--pool", default="", help="also create a stock pool with this slug")
    risk = sub.add_parser("risk").add_subparsers(dest="risk_command", required=True)
    risk.add_parser("rules", help="print the risk rules in force")
    risk_load = risk.add_parser("load", help="validate a risk rules TOML file and put it in force (audited)")
    risk_load.add_argument("file")
    faq = sub.add_parser("faq").add_subparsers(dest="faq_command", required=True)
    classify = faq.add_parser("classify", help='print {"intent": …, "confidence": …} as one JSON line per text')
    classify.add_argument("text", nargs="?", default=None)
    classify.add_argument("--file", default=None, help="one text per line (- for stdin): one JSON line each")
    classify.add_argument("--intents", default=None, help="FAQ TOML file (default: the built-in intents)")
    add_supplier_commands(sub)
    api_cli.register(sub, _HANDLERS)  # kamibot api-keys … (bot/api_cli.py)
    report_cli.register(sub, _HANDLERS)  # kamibot report (bot/report_cli.py)
    distributors_cli.register(sub, _HANDLERS)  # kamibot distributors … (bot/distributors_cli.py)
    reconcile_cli.register(sub, _HANDLERS)  # kamibot reconcile … (bot/reconcile_cli.py)
    return p


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it is installed (Linux, macOS): the event loop's own overhead per socket read/write and
    callback is a fraction of asyncio's pure-Python selector loop; anywhere else asyncio's default loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - not installed on this platform
        return None
    return uvloop.new_event_loop


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = Settings()
    configure_logging("WARNING" if args.command == "demo" else settings.log_level, settings.log_json)
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            return runner.run(_dispatch(args, settings))
    except (ShopError, VaultError, ValueError, OSError) as exc:
        print(f"kamibot: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


async def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "db":
        store = await open_store(settings, migrate=False)
        try:
            print(f"schema version {await store.migrate()}")
        finally:
            await store.close()
        return 0
    if args.command == "faq":
        return _faq_classify(args)
    if args.command in ("backup", "restore"):  # before build_shop: neither may create a database
        from bot import backup

        run = backup.run_backup if args.command == "backup" else backup.run_restore
        return await run(settings, Path(args.file))
    if args.command == "run":
        from bot.server import serve

        return await serve(settings)
    handler = _HANDLERS[f"{args.command}.{_sub(args)}"]
    shop = await build_shop(settings)
    try:
        return await handler(shop, args)
    finally:
        await shop.close()


def _sub(args: argparse.Namespace) -> str:
    sub = str(getattr(args, f"{args.command}_command", "") or "")
    return f"{sub} {args.menu_command}" if sub == "menu" and getattr(args, "menu_command", None) else sub


def _faq_classify(args: argparse.Namespace) -> int:
    """The FAQ matcher outside the chat (no database): evaluate texts or a merchant's TOML file."""
    from handlers.faq import FaqMatcher

    if (args.text is None) == (args.file is None):
        raise ValueError("faq classify: give either TEXT or --file PATH")
    matcher = FaqMatcher.from_toml(Path(args.intents)) if args.intents else FaqMatcher.default()
    if args.file is None:
        texts: list[str] = [args.text]
    elif args.file == "-":
        texts = sys.stdin.read().splitlines()
    else:
        texts = Path(args.file).read_text(encoding="utf-8").splitlines()
    for text in texts:
        match = matcher.classify(text)
        print(json.dumps({"intent": match.intent, "confidence": match.confidence}, ensure_ascii=False))
    return 0


async def _demo(shop: Shop, args: argparse.Namespace) -> int:
    from bot.demo import run_demo

    await run_demo(shop, args.merchant, args.lang)
    return 0


async def _rotate(shop: Shop, args: argparse.Namespace) -> int:
    kid, moved = await rotate_keys(shop.store, shop.vault)
    print(f"active key {kid}; {moved} codes re-encrypted")
    return 0


async def _import(shop: Shop, args: argparse.Namespace) -> int:
    cost = parse_unit_cost(args.cost)
    pool = await shop.catalog.find_pool(args.target)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.file)
        if args.file == "-":
            path = Path(tmp) / "stdin.txt"
            with path.open("wb") as fh:  # spooled to disk: checked whole before anything is written
                shutil.copyfileobj(sys.stdin.buffer, fh)
        src = ImportSource(path, detect_kind(path, args.format))
        with _progress(not args.json) as progress:
            stats = await CodeImporter(shop.store, shop.vault).run(pool, src, supplier=args.supplier, unit_cost=cost,
                                                                   currency=args.currency, progress=progress)
    summary = {"pool": pool.slug, "imported": stats.imported, "duplicate_in_file": stats.duplicate_in_batch,
               "duplicate_in_vault": stats.duplicate_in_vault, "invalid": len(stats.invalid),
               "invalid_lines": [{"line": n, "reason": r} for n, r in stats.invalid[:100]]}
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
    else:
        print(f"imported {stats.imported} · duplicates in file {stats.duplicate_in_batch} · already in vault "
              f"{stats.duplicate_in_vault} · invalid lines {len(stats.invalid)}")
        for no, why in stats.invalid[:100]:
            print(f"  line {no}: {why}")
    return 0


class _progress:
    """A rich progress bar over the file's lines while importing (quiet when not wanted)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Callable[[int, int], None] | None:
        if not self.enabled:
            return None
        from rich.progress import Progress

        self._bar = Progress(transient=False)
        self._bar.__enter__()
        self._task = self._bar.add_task("importing", total=None)
        return lambda done, total: self._bar.update(self._task, completed=done, total=total)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)


async def _stock(shop: Shop, args: argparse.Namespace) -> int:
    listing = await shop.catalog.stock_listing()
    for lv in listing.pools:
        low = "  LOW" if listing.low(lv) else ""
        print(f"pool {lv.pool_slug}: available {lv.available}, reserved {lv.reserved}{low}")
    for item in listing.skus:
        print(f"  sku {item.sku.slug} (#{item.sku.id}): {item.sellable} sellable")
    return 0


async def _catalog_load(shop: Shop, args: argparse.Namespace) -> int:
    counts = await shop.catalog.load_file(Path(args.file))
    print(" · ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


async def _catalog_list(shop: Shop, args: argparse.Namespace) -> int:
    tr = Translator("en")
    for product in await shop.catalog.products():
        print(f"{product.slug} (#{product.id}) {product.name_en} / {product.name_zh}"
              f"{'' if product.active else ' [inactive]'}")
        for sku in await shop.catalog.skus(product.id):
            prices = ", ".join(f"{p.channel} {tr.money('en', p.amount, p.currency)}"
                               for p in await shop.catalog.prices(sku.id))
            print(f"  {sku.slug} (#{sku.id}) units {sku.units} qty {sku.min_qty}-{sku.max_qty} "
                  f"limit {sku.per_user_limit or '-'}: {prices or 'no price'}"
                  f"{f' [top-up target {sku.target_rule}]' if sku.target_rule else ''}")
    return 0


async def _catalog_price(shop: Shop, args: argparse.Namespace) -> int:
    price = await shop.catalog.set_price(args.sku, args.channel, args.amount)
    print(f"{args.sku} {price.channel}: {price.amount} {price.currency}")
    return 0


async def _catalog_sku(shop: Shop, args: argparse.Namespace) -> int:
    spec = sku_spec({"slug": args.slug, "product": args.product, "pool": args.pool, "name_en": args.name_en,
                     "name_zh": args.name_zh, "units": args.units, "min_qty": args.min, "max_qty": args.max,
                     "per_user_limit": args.limit, "target": args.target})
    await shop.catalog.save_sku(spec)
    print(f"sku {args.slug} saved")
    return 0


async def _catalog_product(shop: Shop, args: argparse.Namespace) -> int:
    data: dict[str, Any] = {"product": [{
        "slug": args.slug, "category": args.category, "name_en": args.name_en, "name_zh": args.name_zh,
        "instructions_en": args.instructions_en, "instructions_zh": args.instructions_zh}]}
    if args.category not in {c.slug for c in await shop.catalog.categories()}:
        data["category"] = [{"slug": args.category, "name_en": args.category, "name_zh": args.category}]
    if args.pool:
        data["pool"] = [{"slug": args.pool, "name": args.pool}]
    await shop.catalog.apply(ShopFile.model_validate(data))
    print(f"product {args.slug} saved")
    return 0


async def _set_webhook(shop: Shop, args: argparse.Namespace) -> int:
    from bot.telegram import set_webhook

    if not args.url.startswith("https://"):
        raise ValueError("Telegram only calls https:// webhook URLs")
    await set_webhook(shop, args.url)
    print(f"webhook set to {args.url}")
    return 0


async def _wechat_menu_sync(shop: Shop, args: argparse.Namespace) -> int:
    from bot.wechat import sync_menu

    menu = await sync_menu(shop)
    print("menu created: " + ", ".join(b["name"] for b in menu["button"]))
    return 0


async def _risk_rules(shop: Shop, args: argparse.Namespace) -> int:
    from risk.rules import summaries

    if shop.risk is None:
        raise ValueError("the risk engine is disabled (KAMIBOT_RISK__ENABLED=false)")
    for r in summaries(shop.risk.book):
        per = f"{r.of}/{r.dimension}" if r.of else r.dimension
        print(f"{r.rule_id}: {r.kind} per {per} / {r.window} > {r.threshold} -> {r.action}"
              + ("" if r.enabled else " (off)"))
    return 0


async def _risk_load(shop: Shop, args: argparse.Namespace) -> int:
    if shop.risk is None:
        raise ValueError("the risk engine is disabled (KAMIBOT_RISK__ENABLED=false)")
    text = await asyncio.to_thread(Path(args.file).read_text, encoding="utf-8")
    book = await shop.risk.replace_rules(text, "cli")
    print(f"{len(book.rules)} risk rules in force")
    return 0


_HANDLERS: dict[str, Callable[[Shop, argparse.Namespace], Awaitable[int]]] = {
    "risk.rules": _risk_rules,
    "risk.load": _risk_load,
    "wechat.menu sync": _wechat_menu_sync,
    "demo.": _demo,
    "telegram.set-webhook": _set_webhook,
    "keys.rotate": _rotate,
    "codes.import": _import,
    "codes.stock": _stock,
    "catalog.load": _catalog_load,
    "catalog.list": _catalog_list,
    "catalog.price": _catalog_price,
    "catalog.sku": _catalog_sku,
    "catalog.product": _catalog_product,
}
_HANDLERS.update(SUPPLIER_HANDLERS)
