"""The one report module (issue 16): revenue, cost, fees, refunds, profit and orders from the ledger over
[since, until), grouped by SKU, channel, supplier or day/week/month in the shop's display timezone. Every currency
stays on its own (integer minor units, never added across currencies); a merchant-set rate gives an optional
converted total, labelled as converted. Chat (/report), the CLI (kamibot report) and exports all read this."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Protocol
from zoneinfo import ZoneInfo

from storage.protocols.catalog import CatalogStore
from storage.protocols.reports import STORE_GROUPINGS, CustomerSales, LedgerGroup, ReportStore
from storage.records import DUPLICATE_PAYMENT, DUPLICATE_REFUND

PERIODS = ("day", "week", "month")
GROUPINGS = (*STORE_GROUPINGS, *PERIODS)
MAX_BUCKETS = 1000
#: ledger kinds that are a second payment and its automatic refund: net zero, left out of every figure
IGNORED_KINDS = (DUPLICATE_PAYMENT, DUPLICATE_REFUND)
#: the ledger kind of a distributor's commission on an order (booked negative, like cost and fees)
COMMISSION = "commission"
COLUMNS = ("group", "currency", "orders", "revenue", "refunds", "cost", "fees", "commission", "profit")


class ReportError(ValueError):
    """Bad report input (dates, grouping, rate): nothing was read or changed."""


class ReportSource(ReportStore, CatalogStore, Protocol):
    """What the report reads: grouped ledger sums and the SKU slugs for labels."""


@dataclass(slots=True)
class MoneyRow:
    """One group in one currency; every amount a positive magnitude in minor units."""

    group: str
    currency: str
    orders: int = 0
    revenue: int = 0
    refunds: int = 0
    cost: int = 0
    fees: int = 0
    commission: int = 0

    @property
    def profit(self) -> int:
        return self.revenue - self.refunds - self.cost - self.fees - self.commission

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "profit": self.profit}


@dataclass(frozen=True, slots=True)
class Converted:
    """Totals converted into one currency at the merchant's rates: an estimate, labelled as converted."""

    currency: str
    rates: dict[str, str]
    revenue: int
    refunds: int
    cost: int
    fees: int
    profit: int
    commission: int = 0


@dataclass(frozen=True, slots=True)
class MoneyReport:
    since: datetime  # UTC
    until: datetime
    by: str
    timezone: str
    rows: list[MoneyRow]
    totals: list[MoneyRow]  # one per currency, group "total"
    converted: Converted | None = None
    skipped: list[str] = field(default_factory=list)  # currencies without a rate when converting

    def local_days(self) -> tuple[date, date]:
        """The first and the last local day covered (both inclusive)."""
        tz = ZoneInfo(self.timezone)
        return self.since.astimezone(tz).date(), self.until.astimezone(tz).date() - timedelta(days=1)

    def as_json(self) -> str:
        return json.dumps({
            "from": self.since.isoformat(), "to": self.until.isoformat(), "by": self.by, "timezone": self.timezone,
            "rows": [r.as_dict() for r in self.rows], "totals": [r.as_dict() for r in self.totals],
            "converted": None if self.converted is None else asdict(self.converted),
            "not_converted": self.skipped}, ensure_ascii=False)

    def as_csv(self) -> str:
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(COLUMNS)
        for r in [*self.rows, *self.totals]:
            d = r.as_dict()
            w.writerow([d[c] for c in COLUMNS])
        if self.converted is not None:
            c = self.converted
            w.writerow([f"total (converted to {c.currency})", c.currency, "", c.revenue, c.refunds, c.cost, c.fees,
                        c.commission, c.profit])
        return out.getvalue()


def parse_day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ReportError(f"not a date (YYYY-MM-DD): {text!r}") from None


def parse_rates(specs: Sequence[str]) -> dict[str, Decimal]:
    """`XTR=13` means one minor unit of XTR is worth 13 minor units of the target currency."""
    rates: dict[str, Decimal] = {}
    for spec in specs:
        cur, sep, value = spec.partition("=")
        try:
            rate = Decimal(value)
        except InvalidOperation:
            rate = Decimal(-1)
        if not sep or not cur.strip() or not rate.is_finite() or rate < 0:
            raise ReportError(f"not a rate (CURRENCY=minor units of the target per minor unit): {spec!r}")
        rates[cur.strip().upper()] = rate
    return rates


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), tz).astimezone(UTC)


def bucket_starts(first: date, last: date, by: str) -> list[date]:
    """Local calendar boundaries from `first` to `last` (exclusive end), aligned to weeks (Monday) / months."""
    if by == "day":
        start = first
    elif by == "week":
        start = first - timedelta(days=first.weekday())
    else:
        start = first.replace(day=1)
    days = [start]
    while days[-1] < last:
        d = days[-1]
        if by == "day":
            nxt = d + timedelta(days=1)
        elif by == "week":
            nxt = d + timedelta(days=7)
        else:
            nxt = (d.replace(day=28) + timedelta(days=4)).replace(day=1)
        days.append(nxt)
        if len(days) > MAX_BUCKETS + 1:
            raise ReportError(f"more than {MAX_BUCKETS} {by}s: choose a shorter period or a coarser grouping")
    return days


def fold(groups: Sequence[LedgerGroup], label: Mapping[str, str] | None = None) -> list[MoneyRow]:
    """Ledger sums (signed as booked) → rows of positive magnitudes; orders are the distinct paid orders."""
    rows: dict[tuple[str, str], MoneyRow] = {}
    for g in groups:
        if g.kind in IGNORED_KINDS:
            continue
        name = label.get(g.key, g.key) if label else g.key
        row = rows.setdefault((name, g.currency), MoneyRow(name, g.currency))
        if g.kind == "sale":
            row.revenue += g.amount
            row.orders += g.orders
        elif g.kind == "refund":
            row.refunds -= g.amount
        elif g.kind in ("cost", "cost_reversal"):
            row.cost -= g.amount
        elif g.kind == "fee":
            row.fees -= g.amount
        elif g.kind == COMMISSION:
            row.commission -= g.amount
    return list(rows.values())


def totals(rows: Sequence[MoneyRow]) -> list[MoneyRow]:
    out: dict[str, MoneyRow] = {}
    for r in rows:
        t = out.setdefault(r.currency, MoneyRow("total", r.currency))
        t.orders += r.orders
        t.revenue += r.revenue
        t.refunds += r.refunds
        t.cost += r.cost
        t.fees += r.fees
        t.commission += r.commission
    return [out[c] for c in sorted(out)]


def convert(tot: Sequence[MoneyRow], target: str, rates: Mapping[str, Decimal]) -> tuple[Converted, list[str]]:
    rates = {**rates, target: Decimal(1)}
    sums = dict.fromkeys(("revenue", "refunds", "cost", "fees", "commission"), Decimal(0))
    skipped = []
    for t in tot:
        rate = rates.get(t.currency)
        if rate is None:
            skipped.append(t.currency)
            continue
        for k in sums:
            sums[k] += getattr(t, k) * rate
    whole = {k: int(v.quantize(Decimal(1), ROUND_HALF_EVEN)) for k, v in sums.items()}
    profit = whole["revenue"] - whole["refunds"] - whole["cost"] - whole["fees"] - whole["commission"]
    return Converted(target, {c: str(r) for c, r in sorted(rates.items())}, profit=profit, **whole), skipped


class MoneyReports:
    """Builds MoneyReports for local dates in the shop's display timezone."""

    def __init__(self, store: ReportSource, timezone: str = "Asia/Shanghai") -> None:
        self.store = store
        self.tz = ZoneInfo(timezone)
        self.timezone = timezone

    def today(self, now: datetime) -> date:
        return now.astimezone(self.tz).date()

    async def report(self, first: date, last: date, by: str = "sku", convert_to: str | None = None,
                     rates: Mapping[str, Decimal] | None = None) -> MoneyReport:
        """Local days [first, last) grouped `by`; with `convert_to`, a converted total at `rates`."""
        if by not in GROUPINGS:
            raise ReportError(f"unknown grouping {by!r}: one of {', '.join(GROUPINGS)}")
        if first >= last:
            raise ReportError(f"the start {first} is not before the end {last}")
        since, until = local_midnight(first, self.tz), local_midnight(last, self.tz)
        if by in PERIODS:
            starts = bucket_starts(first, last, by)
            bounds = [max(since, min(until, local_midnight(d, self.tz))) for d in starts]
            labels = {str(i): d.isoformat() for i, d in enumerate(starts)}
            rows = fold(await self.store.ledger_by_period(bounds), labels)
        else:
            labels = {str(s.id): s.slug for s in await self.store.skus()} if by == "sku" else {}
            rows = fold(await self.store.ledger_grouped(since, until, by), labels)
            blank = {"supplier": "(own stock)", "distributor": "(direct)"}.get(by)
            if blank:
                rows = [MoneyRow(r.group or blank, r.currency, r.orders, r.revenue, r.refunds, r.cost,
                                 r.fees, r.commission) if not r.group else r for r in rows]
        rows.sort(key=lambda r: (r.group, r.currency))
        tot = totals(rows)
        if convert_to:
            conv, skipped = convert(tot, convert_to.upper(), rates or {})
            return MoneyReport(since, until, by, self.timezone, rows, tot, conv, skipped)
        return MoneyReport(since, until, by, self.timezone, rows, tot)


@dataclass(frozen=True, slots=True)
class TopCustomer:
    channel: str
    user_id: str
    orders: int
    amounts: dict[str, int]  # currency → paid


@dataclass(frozen=True, slots=True)
class Cohort:
    """The customers of a period whose first purchase ever fell in `month` (local YYYY-MM), and their paid orders
    in the period."""

    month: str
    customers: int
    orders: int


@dataclass(frozen=True, slots=True)
class Portrait:
    """Customers of a period by id only: new (first sale in the period) vs returning, repeat rate (customers with
    2+ orders, basis points), average order value per currency, refunds per revenue (basis points per currency),
    paid orders per channel and language, top customers by paid orders, first-purchase cohorts by month."""

    customers: int
    new: int
    returning: int
    repeat_bp: int
    average_order: dict[str, int]
    refund_bp: dict[str, int]
    channels: dict[str, int]
    languages: dict[str, int]
    top: list[TopCustomer]
    cohorts: list[Cohort] = field(default_factory=list)  # oldest month first


class PortraitSource(ReportStore, Protocol):
    """What the portrait reads."""


def cohorts(sales: Sequence[CustomerSales], timezone: str) -> list[Cohort]:
    tz = ZoneInfo(timezone)
    months: dict[str, tuple[set[tuple[str, str]], int]] = {}
    for s in sales:
        if s.first_sale is None:
            continue
        who, orders = months.setdefault(s.first_sale.astimezone(tz).strftime("%Y-%m"), (set(), 0))
        who.add((s.channel, s.user_id))
        months[s.first_sale.astimezone(tz).strftime("%Y-%m")] = (who, orders + s.orders)
    return [Cohort(m, len(who), orders) for m, (who, orders) in sorted(months.items())]


async def portrait(store: PortraitSource, since: datetime, until: datetime, top: int = 10,
                   timezone: str = "Asia/Shanghai") -> Portrait:
    """`timezone`: the display timezone the cohorts' months are counted in."""
    sales = await store.customer_sales(since, until)
    people: dict[tuple[str, str], TopCustomer] = {}
    new: set[tuple[str, str]] = set()
    per_cur: dict[str, list[int]] = {}
    channels: dict[str, int] = {}
    for s in sales:
        who = (s.channel, s.user_id)
        c = people.setdefault(who, TopCustomer(s.channel, s.user_id, 0, {}))
        people[who] = TopCustomer(c.channel, c.user_id, c.orders + s.orders,
                                  {**c.amounts, s.currency: c.amounts.get(s.currency, 0) + s.amount})
        if s.new:
            new.add(who)
        acc = per_cur.setdefault(s.currency, [0, 0])
        acc[0] += s.amount
        acc[1] += s.orders
        channels[s.channel] = channels.get(s.channel, 0) + s.orders
    refunds = {t.currency: t for t in totals(fold(await store.ledger_grouped(since, until, "channel")))}
    n = len(people)
    repeat = sum(1 for p in people.values() if p.orders >= 2)
    ranked = sorted(people.values(), key=lambda p: (-p.orders, p.channel, p.user_id))[:top]
    return Portrait(n, len(new), n - len(new), repeat * 10_000 // n if n else 0,
                    {c: a // o for c, (a, o) in sorted(per_cur.items()) if o},
                    {c: t.refunds * 10_000 // t.revenue for c, t in sorted(refunds.items()) if t.revenue},
                    dict(sorted(channels.items())), dict(sorted((await store.order_languages(since, until)).items())),
                    ranked, cohorts(sales, timezone))
