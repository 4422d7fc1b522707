"""`kamibot report [--from YYYY-MM-DD] [--to YYYY-MM-DD] [--by …] [--format table|csv|xlsx|json] [--output FILE]`:
the money report (fulfillment/money_report.py) over local days [from, to) in the shop's display timezone; amounts in
minor units, every currency on its own, an optional converted total (`--convert-to CNY --rate XTR=13`) labelled as
converted. XLSX (fulfillment/report_export.py) goes to --output, or to standard output when that is not a terminal."""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from bot.composition import Shop
from fulfillment.money_report import (
    COLUMNS,
    GROUPINGS,
    MoneyReport,
    MoneyReports,
    Portrait,
    parse_day,
    parse_rates,
    portrait,
)
from fulfillment.report_export import to_xlsx

Handlers = dict[str, Callable[[Shop, argparse.Namespace], Awaitable[int]]]
FORMATS = ("table", "csv", "xlsx", "json")
DEFAULT_DAYS = 30


def register(sub: Any, handlers: Handlers) -> None:
    """Add the `report` command to the CLI's subparsers and its handler to the CLI's table."""
    rep = sub.add_parser("report", help="revenue, refunds, cost, fees and profit per currency from the ledger")
    rep.add_argument("--from", dest="first", default=None, help="first local day (YYYY-MM-DD; default: 30 days ago)")
    rep.add_argument("--to", dest="last", default=None, help="local day after the last (exclusive; default: tomorrow)")
    rep.add_argument("--by", choices=GROUPINGS, default="sku")
    rep.add_argument("--format", choices=FORMATS, default="table")
    rep.add_argument("--output", type=Path, default=None, help="write to this file instead of standard output")
    rep.add_argument("--convert-to", default=None, help="also a converted total in this currency")
    rep.add_argument("--rate", action="append", default=[],
                     help="CUR=RATE: minor units of --convert-to per minor unit of CUR (repeatable)")
    rep.add_argument("--portrait", action="store_true",
                     help="customers instead of money: new vs returning, repeat rate, mixes, top customers by id")
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
                      str(conv.revenue), str(conv.refunds), str(conv.cost), str(conv.fees), str(conv.commission),
                      str(conv.profit))
    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(table)
    if report.skipped:
        out.write(f"not converted (no rate): {', '.join(report.skipped)}\n")
    return out.getvalue()


def render_portrait(p: Portrait, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(asdict(p), ensure_ascii=False) + "\n"
    lines = [f"customers\t{p.customers}", f"new\t{p.new}", f"returning\t{p.returning}",
             f"repeat rate\t{p.repeat_bp / 100:.2f}%"]
    lines += [f"average order {c}\t{v}" for c, v in p.average_order.items()]
    lines += [f"refunds/revenue {c}\t{v / 100:.2f}%" for c, v in p.refund_bp.items()]
    lines += [f"channel {c}\t{v}" for c, v in p.channels.items()]
    lines += [f"language {c}\t{v}" for c, v in p.languages.items()]
    lines += [f"cohort {c.month}\t{c.customers} customers\t{c.orders} orders" for c in p.cohorts]
    lines += [f"top {t.channel}:{t.user_id}\t{t.orders}\t" + " ".join(f"{c}={a}" for c, a in t.amounts.items())
              for t in p.top]
    return "\n".join(lines) + "\n"


def _emit(body: str | bytes, output: Path | None) -> int:
    data = body.encode("utf-8") if isinstance(body, str) else body
    if output is not None:
        output.write_bytes(data)
        return 0
    if isinstance(body, bytes) and sys.stdout.isatty():
        print("kamibot report: XLSX is binary; give --output FILE or redirect standard output", file=sys.stderr)
        return 2
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
    return 0


async def _report(shop: Shop, args: argparse.Namespace) -> int:
    reports = MoneyReports(shop.store, shop.settings.display_timezone)
    rates = parse_rates(args.rate)
    last = parse_day(args.last) if args.last else reports.today(datetime.now(UTC)) + timedelta(days=1)
    first = parse_day(args.first) if args.first else last - timedelta(days=DEFAULT_DAYS)
    report = await reports.report(first, last, args.by, args.convert_to, rates)
    if args.portrait:
        if args.format == "xlsx":
            print("kamibot report: --portrait prints table, csv or json", file=sys.stderr)
            return 2
        return _emit(render_portrait(await portrait(shop.store, report.since, report.until,
                                                        timezone=reports.timezone), args.format),
                     args.output)
    if args.format == "json":
        return _emit(report.as_json() + "\n", args.output)
    if args.format == "csv":
        return _emit(report.as_csv(), args.output)
    if args.format == "xlsx":
        return _emit(to_xlsx(report), args.output)
    return _emit(render_table(report), args.output)
