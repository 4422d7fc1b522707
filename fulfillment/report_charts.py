"""PNG charts of the report module's results (issue 16): revenue and profit over time, profit by channel, top SKUs.

Matplotlib's object API on the Agg canvas (no pyplot state, no display), so charts render in a worker thread.
Chinese labels need a CJK font the machine may not have: the shop ships Noto Sans CJK (SIL OFL 1.1) through the
`cvttf-notosanscjk-regular` wheel and registers it here; its glyphs cover Latin, simplified and traditional
Chinese. Amounts are drawn in major units (display only: every figure in the report stays integer minor units).
Labels arrive translated: this module knows no chat channel and no locale."""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from babel.numbers import get_currency_precision

from fulfillment.money_report import MoneyReport, MoneyReports, MoneyRow

if TYPE_CHECKING:  # matplotlib is imported on the first chart: every process imports this module, few draw
    from matplotlib.figure import Figure

FONT_FAMILY = "Noto Sans CJK TC"
WIDTH_IN, HEIGHT_IN, DPI = 8.0, 3.2, 100  # 800 px wide, 320 px per currency panel
MAX_PANELS = 4  # currencies drawn; the rest stay in the text and the exports
TOP_SKUS = 10
REVENUE_COLOUR, PROFIT_COLOUR, LOSS_COLOUR = "#3b6fb6", "#2e9e5b", "#c8453a"
_font_lock = threading.Lock()
_font_ready = False


class ChartFontMissing(RuntimeError):
    """The CJK font package is not installed (pip install kamibot brings it): charts would show boxes."""


def cjk_font_path() -> Path:
    try:
        import cvttf_NotoSansCJK_Regular as font_pkg  # type: ignore[import-untyped]
    except ImportError:
        raise ChartFontMissing("the CJK font package cvttf-notosanscjk-regular is not installed") from None
    return Path(font_pkg.get_TTF_path())


def use_cjk_font() -> None:
    """Register the shipped font with matplotlib once per process and make it the first sans-serif family (the
    process's charts are all ours; DejaVu Sans stays as the per-glyph fallback)."""
    global _font_ready
    with _font_lock:
        if not _font_ready:
            import matplotlib
            from matplotlib import font_manager

            font_manager.fontManager.addfont(str(cjk_font_path()))
            matplotlib.rcParams["font.family"] = "sans-serif"
            matplotlib.rcParams["font.sans-serif"] = [FONT_FAMILY, "DejaVu Sans"]
            matplotlib.rcParams["axes.unicode_minus"] = False  # the CJK font has no U+2212 MINUS SIGN glyph
            _font_ready = True


@dataclass(frozen=True, slots=True)
class ChartText:
    """Translated titles and legends (the caller's language)."""

    over_time: str
    by_channel: str
    top_skus: str
    revenue: str
    profit: str
    no_data: str


@dataclass(frozen=True, slots=True)
class Chart:
    name: str  # revenue_profit | profit_by_channel | top_skus
    title: str
    png: bytes


@dataclass(frozen=True, slots=True)
class Overview:
    """The three reports the charts (and the dashboard) draw, all over the same local days."""

    over_time: MoneyReport
    by_channel: MoneyReport
    by_sku: MoneyReport


def period_grouping(first: date, last: date) -> str:
    """Days up to about two months, weeks up to a year, months beyond."""
    span = (last - first).days
    return "day" if span <= 62 else "week" if span <= 366 else "month"


async def overview(reports: MoneyReports, first: date, last: date) -> Overview:
    return Overview(await reports.report(first, last, period_grouping(first, last)),
                    await reports.report(first, last, "channel"), await reports.report(first, last, "sku"))


def major(amount: int, currency: str) -> float:
    """Minor units → major units for an axis (a drawing, never a sum)."""
    digits = 0 if currency == "XTR" else int(get_currency_precision(currency))
    return amount / float(10**digits)


def currencies(rows: Sequence[MoneyRow]) -> list[str]:
    return sorted({r.currency for r in rows})[:MAX_PANELS]


def _figure(panels: int) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    use_cjk_font()
    fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN * max(panels, 1)), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> bytes:
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=DPI, facecolor="white")
    return out.getvalue()


def _empty(title: str, text: ChartText) -> bytes:
    fig = _figure(1)
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.text(0.5, 0.5, text.no_data, ha="center", va="center", fontsize=16, color="#777777")
    ax.set_axis_off()
    return _png(fig)


def _bucket_days(report: MoneyReport) -> list[date]:
    """Every bucket start of the period, so days without sales are drawn as zero, not skipped."""
    first, last = report.local_days()
    step = {"day": 1, "week": 7}.get(report.by)
    starts: list[date] = []
    d = first if report.by == "day" else first - timedelta(days=first.weekday()) if report.by == "week" \
        else first.replace(day=1)
    while d <= last:
        starts.append(d)
        d = d + timedelta(days=step) if step else (d.replace(day=28) + timedelta(days=4)).replace(day=1)
    return starts


def revenue_profit_over_time(report: MoneyReport, text: ChartText) -> Chart:
    """Lines of revenue and profit per bucket (report grouped by day, week or month), a panel per currency."""
    if report.by not in ("day", "week", "month"):
        raise ValueError(f"over time needs a report by day, week or month, not by {report.by}")
    curs = currencies(report.rows)
    if not curs:
        return Chart("revenue_profit", text.over_time, _empty(text.over_time, text))
    days = _bucket_days(report)
    fig = _figure(len(curs))
    for n, cur in enumerate(curs, 1):
        ax = fig.add_subplot(len(curs), 1, n)
        by_day = {r.group: r for r in report.rows if r.currency == cur}
        revenue = [major(by_day[d.isoformat()].revenue, cur) if d.isoformat() in by_day else 0.0 for d in days]
        profit = [major(by_day[d.isoformat()].profit, cur) if d.isoformat() in by_day else 0.0 for d in days]
        xs = list(range(len(days)))
        ax.plot(xs, revenue, marker="o", markersize=3, color=REVENUE_COLOUR, label=f"{text.revenue} ({cur})")
        ax.plot(xs, profit, marker="o", markersize=3, color=PROFIT_COLOUR, label=f"{text.profit} ({cur})")
        every = max(1, len(days) // 10)  # about ten date labels, whatever the period
        ax.set_xticks(xs[::every], [d.isoformat() for d in days[::every]])
        ax.axhline(0, color="#999999", linewidth=0.8)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left")
        ax.tick_params(axis="x", labelrotation=30)
        if n == 1:
            ax.set_title(text.over_time)
    return Chart("revenue_profit", text.over_time, _png(fig))


def _bars(title: str, rows: Sequence[MoneyRow], text: ChartText, with_revenue: bool) -> bytes:
    curs = currencies(rows)
    if not curs:
        return _empty(title, text)
    fig = _figure(len(curs))
    for n, cur in enumerate(curs, 1):
        ax = fig.add_subplot(len(curs), 1, n)
        mine = [r for r in rows if r.currency == cur]
        names = [r.group for r in mine]
        ys = list(range(len(mine)))
        profit = [major(r.profit, cur) for r in mine]
        colours = [PROFIT_COLOUR if p >= 0 else LOSS_COLOUR for p in profit]
        if with_revenue:
            ax.barh([y + 0.2 for y in ys], [major(r.revenue, cur) for r in mine], height=0.4, color=REVENUE_COLOUR,
                    label=f"{text.revenue} ({cur})")
            ax.barh([y - 0.2 for y in ys], profit, height=0.4, color=colours, label=f"{text.profit} ({cur})")
        else:
            ax.barh(ys, profit, height=0.6, color=colours, label=f"{text.profit} ({cur})")
        ax.set_yticks(ys, names)
        ax.invert_yaxis()
        ax.axvline(0, color="#999999", linewidth=0.8)
        ax.grid(True, axis="x", alpha=0.3)
        ax.legend(loc="lower right")
        if n == 1:
            ax.set_title(title)
    return _png(fig)


def profit_by_channel(report: MoneyReport, text: ChartText) -> Chart:
    if report.by != "channel":
        raise ValueError(f"profit by channel needs a report by channel, not by {report.by}")
    return Chart("profit_by_channel", text.by_channel, _bars(text.by_channel, report.rows, text, False))


def top_skus(report: MoneyReport, text: ChartText, top: int = TOP_SKUS) -> Chart:
    """The `top` SKUs by revenue in each currency, revenue and profit side by side."""
    if report.by != "sku":
        raise ValueError(f"top SKUs needs a report by SKU, not by {report.by}")
    rows: list[MoneyRow] = []
    for cur in currencies(report.rows):
        rows += sorted((r for r in report.rows if r.currency == cur), key=lambda r: (-r.revenue, r.group))[:top]
    return Chart("top_skus", text.top_skus, _bars(text.top_skus, rows, text, True))


def charts(view: Overview, text: ChartText) -> list[Chart]:
    """The three charts of a period, in the order chat and dashboard show them."""
    return [revenue_profit_over_time(view.over_time, text), profit_by_channel(view.by_channel, text),
            top_skus(view.by_sku, text)]
