"""The merchant's money view in chat: `/report [period] [by …] [csv|xlsx]` (a text summary, three PNG charts and the
file on request) and `/dashboard [period]` (a signed link to the read-only dashboard page, valid 10 minutes)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from fulfillment.errors import BadQuantity
from fulfillment.money_report import MoneyReport, MoneyRow, ReportError
from fulfillment.report_charts import ChartText, charts
from fulfillment.report_export import FORMATS as EXPORT_FORMATS
from fulfillment.report_export import export
from handlers.context import ShopContext
from handlers.types import Document, Reply
from locales import Translator

USAGE = "usage: /report [today|7d|30d|YYYY-MM] [by sku|channel|supplier|day|week|month] [csv|xlsx]"
DASHBOARD_DEFAULT = "30d"
LINK_MINUTES = 10


def chart_text(tr: Translator, lang: str) -> ChartText:
    return ChartText(over_time=tr(lang, "report.chart_over_time"), by_channel=tr(lang, "report.chart_by_channel"),
                     top_skus=tr(lang, "report.chart_top_skus"), revenue=tr(lang, "report.revenue"),
                     profit=tr(lang, "report.profit"), no_data=tr(lang, "report.no_data"))


class MerchantReports:
    def __init__(self, ctx: ShopContext) -> None:
        self.ctx = ctx

    def _t(self, lang: str, msgid: str, **params: object) -> str:
        return self.ctx.tr(lang, msgid, **params)

    def _line(self, lang: str, msgid: str, r: MoneyRow) -> str:
        m = self.ctx.tr.money
        line = self._t(lang, msgid, group=r.group, currency=r.currency, orders=r.orders,
                       revenue=m(lang, r.revenue, r.currency), refunds=m(lang, r.refunds, r.currency),
                       cost=m(lang, r.cost, r.currency), fees=m(lang, r.fees, r.currency),
                       profit=m(lang, r.profit, r.currency))
        if r.commission:
            line += self._t(lang, "report.commission_part", commission=m(lang, r.commission, r.currency))
        return line

    def summary(self, lang: str, report: MoneyReport) -> str:
        first, last = report.local_days()
        lines = [self._t(lang, "merchant.report_period", by=report.by, first=first.isoformat(),
                         last=last.isoformat(), timezone=report.timezone)]
        lines += [self._line(lang, "merchant.report_row", r) for r in report.rows]
        lines += [self._line(lang, "merchant.report_total", t) for t in report.totals]
        return "\n".join(lines)

    async def report(self, lang: str, args: list[str]) -> list[Reply]:
        fmt = args.pop() if args and args[-1] in EXPORT_FORMATS else None
        reports = self.ctx.services.reports
        try:
            report = await reports.for_chat(args, self.ctx.timezone)
        except ReportError as exc:
            raise BadQuantity(f"{USAGE} ({exc})") from None
        if not report.rows:
            return [Reply(self._t(lang, "merchant.report_empty"))]
        replies = [Reply(self.summary(lang, report))]
        first, last = report.local_days()
        view = await reports.overview(first, last + timedelta(days=1), self.ctx.timezone)
        # drawing takes a few hundred milliseconds of CPU: off the event loop (Agg figures share no state)
        for chart in await asyncio.to_thread(charts, view, chart_text(self.ctx.tr, lang)):
            replies.append(Reply(chart.title, photo=chart.png))
        if fmt is not None:
            name, body = export(report, fmt)
            replies.append(Reply(self._t(lang, "report.file_caption", name=name), document=Document(name, body)))
        return replies

    async def dashboard(self, lang: str, args: list[str]) -> list[Reply]:
        if self.ctx.dashboard_link is None:
            return [Reply(self._t(lang, "report.dashboard_off"))]
        try:
            first, last, _ = self.ctx.services.reports.period(args or [DASHBOARD_DEFAULT], self.ctx.timezone)
        except ReportError as exc:
            raise BadQuantity(f"usage: /dashboard [today|7d|30d|YYYY-MM] ({exc})") from None
        url = self.ctx.dashboard_link(first, last, lang)
        return [Reply(self._t(lang, "report.dashboard_link", first=first.isoformat(),
                              last=(last - timedelta(days=1)).isoformat(), minutes=LINK_MINUTES, url=url))]
