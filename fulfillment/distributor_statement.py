"""A distributor's statement for one month in the shop's time zone: the commission ledger's opening and closing
payable balance, accruals, reversals and payouts, the API wallet's movements, each line as a CSV row, and the sales
the distributor brought (orders, revenue, refunds, commission per currency) from the money report module
(fulfillment/money_report.py, grouped by distributor) — the same figures /report and the dashboard show.

Every figure is a sum of ledger lines the store returns for the period (closing = opening + the period's lines), so
a statement always agrees with the ledger. Lines are dated when they were written: a period once closed never gains
a line later.

Clawback: a refund of an order whose commission was paid out already reverses it all the same, and the payable
balance goes below zero. That negative balance is carried (no payout is accepted while the payable is 0 or less:
storage PayableExceeded) and offset by the next accruals. The statement names it: `carried` is the clawback after a
line (max(0, -balance)), a reversal's `clawback` the part of it that went below zero, an accrual's (negative) the
part of it that offset a carried clawback; the CSV has both as columns and opening/closing rows per currency.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from fulfillment.distributors import DistributorRefused
from fulfillment.money_report import MoneyReports, MoneyRow
from storage.protocol import Store
from storage.protocols.api import WalletLine
from storage.protocols.distributors import CommissionKind, CommissionLine, Distributor

_PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
CSV_HEADER = ("section", "at_utc", "kind", "order_ref", "sku_id", "order_amount", "amount", "currency",
              "balance_after", "note", "clawback", "carried_clawback")


def carried(balance: int) -> int:
    """The clawback a payable balance carries: what the distributor owes back (0 unless the balance is negative)."""
    return max(0, -balance)


def month_bounds(period: str, tz: str) -> tuple[datetime, datetime]:
    """'2026-11' → [start, end) in UTC of that month in the zone `tz`."""
    m = _PERIOD.match(period)
    if m is None:
        raise DistributorRefused("distributor.bad_period")
    year, month = int(m.group(1)), int(m.group(2))
    zone = ZoneInfo(tz)
    start = datetime(year, month, 1, tzinfo=zone)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


def _cell(text: str) -> str:
    """A free-text cell that a spreadsheet would run as a formula is quoted (CSV injection)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@dataclass
class Statement:
    distributor: Distributor
    period: str
    start: datetime
    end: datetime
    opening: dict[str, int]
    lines: list[CommissionLine]
    wallet: list[WalletLine] = field(default_factory=list)
    #: the money report's row for this distributor, one per currency (orders, revenue, refunds, commission)
    sales: list[MoneyRow] = field(default_factory=list)

    def total(self, kind: CommissionKind) -> dict[str, int]:
        out: dict[str, int] = {}
        for ln in self.lines:
            if ln.kind is kind:
                out[ln.currency] = out.get(ln.currency, 0) + ln.amount
        return out

    @property
    def closing(self) -> dict[str, int]:
        out = dict(self.opening)
        for ln in self.lines:
            out[ln.currency] = out.get(ln.currency, 0) + ln.amount
        return out

    def clawbacks(self) -> dict[str, int]:
        """Per currency: what the period's reversals took below zero (commission refunded after it was paid out);
        the accruals that offset it are not netted here (carried at the close says what is left)."""
        out: dict[str, int] = {}
        for ln, claw, _ in self._walk():
            if claw > 0:
                out[ln.currency] = out.get(ln.currency, 0) + claw
        return out

    def _walk(self) -> list[tuple[CommissionLine, int, int]]:
        """Each line with its clawback (the change of the carried clawback it made) and the carried one after it."""
        running = dict(self.opening)
        out = []
        for ln in self.lines:
            before = running.get(ln.currency, 0)
            running[ln.currency] = before + ln.amount
            out.append((ln, carried(running[ln.currency]) - carried(before), carried(running[ln.currency])))
        return out

    @property
    def currencies(self) -> list[str]:
        return sorted(set(self.opening) | {ln.currency for ln in self.lines})

    @property
    def orders(self) -> int:
        return sum(1 for ln in self.lines if ln.kind is CommissionKind.ACCRUAL)

    def csv(self) -> bytes:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_HEADER)
        for c in self.currencies:
            opening = self.opening.get(c, 0)
            writer.writerow(("balance", _at(self.start), "opening", "", "", "", "", c, opening, "", "",
                             carried(opening)))
        running = dict(self.opening)
        for ln, claw, owed in self._walk():
            running[ln.currency] = running.get(ln.currency, 0) + ln.amount
            writer.writerow(("commission", _at(ln.at), ln.kind.value, ln.order_ref, ln.sku_id or "",
                             ln.order_amount if ln.order_id is not None else "", ln.amount, ln.currency,
                             running[ln.currency], _cell(ln.note), claw, owed))
        for c, closing in sorted(self.closing.items()):
            writer.writerow(("balance", _at(self.end), "closing", "", "", "", "", c, closing, "", "",
                             carried(closing)))
        for r in self.sales:
            for kind, amount in (("revenue", r.revenue), ("refunds", -r.refunds), ("commission", -r.commission)):
                writer.writerow(("sales", "", kind, "", "", "", amount, r.currency, "", f"orders={r.orders}", "", ""))
        for w in self.wallet:
            writer.writerow(("wallet", _at(w.at), w.kind, "", "", "", w.amount, w.currency, w.balance_after,
                             _cell(w.note), "", ""))
        return out.getvalue().encode("utf-8")

    @property
    def filename(self) -> str:
        return f"statement-{self.distributor.name}-{self.period}.csv"


def _at(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


async def statement(store: Store, dist: Distributor, period: str, tz: str) -> Statement:
    start, end = month_bounds(period, tz)
    opening = await store.commission_balances(dist.id, before=start)
    # accruals of 0 (orders delivered while the rate was 0) only pin the rate of their order: not shown
    lines = [ln for ln in await store.commission_lines(dist.id, start, end) if ln.amount != 0]
    wallet = await store.wallet_lines_between(dist.api_client_id, start, end) if dist.api_client_id else []
    first = date(int(period[:4]), int(period[5:7]), 1)
    report = await MoneyReports(store, tz).report(first, date(first.year + first.month // 12, first.month % 12 + 1, 1),
                                                  by="distributor")
    sales = [r for r in report.rows if r.group == dist.name]
    return Statement(dist, period, start, end, opening, lines, wallet, sales)
