"""Reconciliation assembled from settings (issue 16): its sources, its daily job, and the CLI
`kamibot reconcile wechatpay|telegram|supplier NAME [--date YYYY-MM-DD] [--statement FILE] [--json]`
plus `kamibot reconcile list [--all]` and `kamibot reconcile resolve ID NOTE…`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.composition import Shop
from fulfillment.reconcile import Findings, Outcome, ReconcileError, Reconciliation, parse_day
from fulfillment.reconcile_stars import StarTransactions
from fulfillment.reconcile_supplier import SupplierRecords
from fulfillment.suppliers.registry import SupplierRegistry

if TYPE_CHECKING:
    import aiohttp

Handlers = dict[str, Callable[[Shop, argparse.Namespace], Awaitable[int]]]
JOB_EVERY_S = 300.0
FIRST_TICK_AFTER_S = 60.0  # the daily run leaves a starting process to payments and delivery first
MAX_STATEMENT_BYTES = 20 * 1024 * 1024


class HttpBotApi:
    """The one Bot API call reconciliation makes (getStarTransactions), as JSON over aiohttp: usable from the CLI,
    where no bot runs. aiohttp, not httpx: httpx logs every request URL at INFO, and a Bot API URL holds the token.
    Errors carry Telegram's status and description, never the URL. aiohttp is imported on the first call: every
    CLI command imports this module, and most never reach a network (see fulfillment/suppliers/registry.py)."""

    def __init__(self, base_url: str, token: str, timeout_s: float = 20.0) -> None:
        self._url = base_url  # "https://api.telegram.org/bot": the token is appended
        self._token = token
        self._timeout_s = timeout_s
        self._http: aiohttp.ClientSession | None = None

    async def call(self, method: str, **params: Any) -> Any:
        import aiohttp

        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout_s))
        try:
            async with self._http.post(f"{self._url}{self._token}/{method}", json=params) as response:
                status = response.status
                data = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise RuntimeError(f"Bot API {method}: {type(exc).__name__}") from None
        if not isinstance(data, dict) or not data.get("ok"):
            desc = str(data.get("description", "")) if isinstance(data, dict) else ""
            raise RuntimeError(f"Bot API {method}: {status} {desc[:80]}")
        return data.get("result")

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None


@dataclass
class ReconcileRuntime:
    """The Reconciliation of one process, what it must close, and its daily job."""

    recon: Reconciliation
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    #: tells merchants of new discrepancies (set by the composition root once the chat context exists)
    report: Callable[[], Awaitable[int]] | None = None
    started: float = field(default_factory=time.monotonic)
    records: SupplierRecords | None = None

    async def sources(self) -> list[str]:
        names = [*self.recon.sources]
        if self.recon.supplier_names is not None:
            names += [f"supplier:{n}" for n in await self.recon.supplier_names()]
        return names

    async def tick(self) -> int:
        """The daily job: yesterday of every source once (leased), then new discrepancies to the merchants."""
        if time.monotonic() - self.started < FIRST_TICK_AFTER_S:
            return 0
        await self.recon.daily(await self.sources())
        if self.report is not None:
            await self.report()
        return 0

    def job(self) -> tuple[str, float, Callable[[], Awaitable[int]]]:
        return "reconcile", JOB_EVERY_S, self.tick

    async def aclose(self) -> None:
        for close in self.closers:
            await close()


def build_reconciliation(shop: Shop) -> ReconcileRuntime:
    """Sources from settings: WeChat Pay when configured, Telegram Stars when a bot token is set, every active
    supplier by its query API."""
    settings = shop.settings
    recon = Reconciliation(shop.store, settings.display_timezone)
    runtime = ReconcileRuntime(recon)
    if settings.wechatpay.enabled:  # the client (and its key files) only when a bill is first asked for
        from bot.wechatpay import load_config
        from fulfillment.reconcile_wechatpay import BEIJING_TZ, BILL_READY_HOUR, WeChatPayBills
        from fulfillment.wechatpay import WeChatPayClient

        bills: list[WeChatPayBills] = []

        async def wechatpay(day: date, zone: tzinfo) -> Findings:
            if not bills:
                client = WeChatPayClient(load_config(settings.wechatpay))
                runtime.closers.append(client.aclose)
                bills.append(WeChatPayBills(shop.store, client))
            return await bills[0].collect(day, zone)

        recon.add("wechatpay", wechatpay, BEIJING_TZ, BILL_READY_HOUR)
    if settings.telegram.enabled:
        api = HttpBotApi(settings.telegram.base_url, settings.telegram.token.get_secret_value())
        recon.add("telegram", StarTransactions(shop.store, api).collect)
        runtime.closers.append(api.aclose)
    registry = SupplierRegistry(shop.store, shop.vault)
    records = SupplierRecords(shop.store, registry.get)
    recon.supplier = records.source
    runtime.closers.append(registry.aclose)

    async def supplier_names() -> list[str]:
        return [s.name for s in await shop.store.suppliers() if s.active]

    recon.supplier_names = supplier_names
    runtime.records = records
    return runtime


def register(sub: Any, handlers: Handlers) -> None:
    rec = sub.add_parser("reconcile", help="check payments, refunds and procurements against WeChat Pay bills, "
                                           "Telegram Star transactions and supplier records")
    what = rec.add_subparsers(dest="reconcile_command", required=True)
    for name in ("wechatpay", "telegram"):
        one = what.add_parser(name, help=f"reconcile one day of {name} (default: yesterday)")
        one.add_argument("--date", default=None, help="the day, YYYY-MM-DD")
        one.add_argument("--json", action="store_true", help="print the outcome as one JSON line")
        handlers[f"reconcile.{name}"] = _run
    sup = what.add_parser("supplier", help="reconcile one day of a supplier (its query API, or --statement)")
    sup.add_argument("name")
    sup.add_argument("--date", default=None, help="the day, YYYY-MM-DD")
    sup.add_argument("--statement", default=None,
                     help="the supplier's statement CSV (our_ref,supplier_order_id,cost,currency,state)")
    sup.add_argument("--json", action="store_true")
    handlers["reconcile.supplier"] = _run
    lst = what.add_parser("list", help="open discrepancies (--all: resolved ones too)")
    lst.add_argument("--all", action="store_true")
    handlers["reconcile.list"] = _list
    res = what.add_parser("resolve", help="resolve a discrepancy with a note")
    res.add_argument("id", type=int)
    res.add_argument("note", nargs="+")
    handlers["reconcile.resolve"] = _resolve


def outcome_json(o: Outcome) -> dict[str, Any]:
    return {"source": o.source, "date": o.day.isoformat(), "checked": o.checked, "found": o.found,
            "new": [{"id": d.id, "kind": d.kind, "reference": d.reference, "order": d.order_ref,
                     "expected": d.expected, "actual": d.actual, "currency": d.currency} for d in o.new],
            "fees_corrected": o.fees_corrected, "fee_delta": o.fee_delta}


async def _run(shop: Shop, args: argparse.Namespace) -> int:
    runtime = build_reconciliation(shop)
    try:
        day: date | None = parse_day(args.date) if args.date else None
        source = args.reconcile_command
        collect = None
        if source == "supplier":
            source = f"supplier:{args.name}"
            if args.statement:
                raw = await asyncio.to_thread(Path(args.statement).read_bytes)
                try:
                    text = raw[:MAX_STATEMENT_BYTES].decode("utf-8")
                except UnicodeDecodeError:
                    raise ReconcileError("reconcile.bad_statement", "the statement is not UTF-8",
                                         reason="not UTF-8") from None
                records, name = runtime.records, args.name
                assert records is not None

                async def collect(d: date, zone: Any) -> Any:
                    return await records.by_statement(name, d, zone, text)
        outcome = await runtime.recon.run(source, day, "cli", "cli", collect)
    except ReconcileError as exc:
        print(f"kamibot: reconcile: {exc}", file=sys.stderr)
        return 2
    finally:
        await runtime.aclose()
    if args.json:
        print(json.dumps(outcome_json(outcome), ensure_ascii=False))
        return 0
    print(f"{outcome.source} {outcome.day}: checked {outcome.checked}, discrepancies {outcome.found}"
          f" ({len(outcome.new)} new), fees corrected {outcome.fees_corrected} ({outcome.fee_delta:+d})")
    for d in outcome.new:
        print(f"  #{d.id} {d.kind} {d.reference} {d.order_ref} expected={d.expected} actual={d.actual} {d.currency}")
    return 0


async def _list(shop: Shop, args: argparse.Namespace) -> int:
    for d in await shop.store.discrepancies(args.all, 200):
        state = f"resolved {d.resolved_at:%Y-%m-%d} by {d.resolved_by}: {d.note}" if d.resolved_at else "open"
        print(f"#{d.id} {d.period} {d.source} {d.kind} {d.reference} {d.order_ref} expected={d.expected}"
              f" actual={d.actual} {d.currency} [{state}]")
    return 0


async def _resolve(shop: Shop, args: argparse.Namespace) -> int:
    recon = Reconciliation(shop.store, shop.settings.display_timezone)
    try:
        d = await recon.resolve(args.id, "cli", "cli", " ".join(args.note))
    except ReconcileError as exc:
        print(f"kamibot: reconcile: {exc}", file=sys.stderr)
        return 2
    print(f"#{d.id} resolved at {d.resolved_at or datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    return 0
