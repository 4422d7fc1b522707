"""`kamibot report [--from YYYY-MM-DD] [--to YYYY-MM-DD] [--by …] [--format table|csv|json]`: the money report
(fulfillment/money_report.py) over local days [from, to) in the shop's display timezone; amounts in minor units,
every currency on its own, an optional converted total (`--convert-to CNY --rate XTR=13`) labelled as converted."""

from __future__ import annotations

import argparse
import io
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from bot.composition import Shop
from fulfillment.money_report import COLUMNS, GROUPINGS, MoneyReport, MoneyReports, parse_day, parse_rates

Handlers = dict[str, Callable[[Shop, argparse.Namespace], Awaitable[int]]]
FORMATS = ("table", "csv", "json")
DEFAULT_DAYS = 30


def register(sub: Any, handlers: Handlers) -> None:
    """Add the `report` command to the CLI's subparsers and its handler to the CLI's table."""
    rep = sub.add_parser("report", help="revenue, refunds, cost, fees and profit per currency from the ledger")
    rep.add_argument("--from", dest="first", default=None, help="first local day (YYYY-MM-DD; default: 30 days ago)")
    rep.add_argument("--to", dest="last", default=None, help="local day after the last (exclusive; default: tomorrow)")
    rep.add_argument("--by", choices=GROUPINGS, default="sku")
    rep.add_argument("--format", choices=FORMATS, default="table")
    rep.add_argument("--convert-to", default=None, help="also a converted total in this currency")
    rep.add_argument("--rate", action="append", default=[],
                     help="CUR=RATE: minor units of --convert-to per minor unit of CUR (repeatable)")
    handlers["report."] = _report


def render_table(report: MoneyReport) -> str:
    table = Table(title=f"{report.since:%Y-%m-%d %H:%M} – {report.until:%Y-%m-%d %H:%M} UTC ({report.timezone}"
                        f" days), by {report.by}, minor units", box=box.SQUARE)
    for c in COLUMNS:
        table.add_column(c, justify="left" if c in ("group", "currency") else "right")
    for r in [*report.rows, *report.totals]:
        d = r.as_dict()
        table.add_row(*(str(d[c]) for c in COLUMNS))
    if report.converted is not None:
        conv = report.converted
        rates = ", ".join(f"{k}={v}" for k, v in conv.rates.items() if k != conv.currency)
        table.add_row(f"total converted to {conv.currency} ({rates or 'no rates'})", conv.currency, "",
                      str(conv.revenue), str(conv.refunds), str(conv.cost), str(conv.fees), str(conv.profit))
    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(table)
    if report.skipped:
        out.write(f"not converted (no rate): {', '.join(report.skipped)}\n")
    return out.getvalue()


async def _report(shop: Shop, args: argparse.Namespace) -> int:
    reports = MoneyReports(shop.store, shop.settings.display_timezone)
    rates = parse_rates(args.rate)
    last = parse_day(args.last) if args.last else reports.today(datetime.now(UTC)) + timedelta(days=1)
    first = parse_day(args.first) if args.first else last - timedelta(days=DEFAULT_DAYS)
    report = await reports.report(first, last, args.by, args.convert_to, rates)
    if args.format == "json":
        print(report.as_json())
    elif args.format == "csv":
        print(report.as_csv(), end="")
    else:
        print(render_table(report), end="")
    return 0
