"""Report charts from real reports on both backends: each PNG decodes, has the expected size, is not blank, draws
the data (more ink with sales than without) and Chinese labels render as real glyphs (no missing-glyph warning,
which the suite turns into an error; two different characters give two different images, not two equal boxes)."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime

import pytest
from PIL import Image, ImageChops

from fulfillment.money_report import MoneyReport, MoneyReports
from fulfillment.report_charts import (
    DPI,
    HEIGHT_IN,
    WIDTH_IN,
    ChartText,
    charts,
    cjk_font_path,
    overview,
    period_grouping,
    profit_by_channel,
    top_skus,
    use_cjk_font,
)
from tests.storage.test_reports_conformance import seed

ZH = ChartText("营业额与利润走势", "各渠道利润", "热销商品", "营业额", "利润", "该时段没有销售")


def decode(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    return image.convert("RGB")


def ink(image: Image.Image) -> int:
    """Pixels that are not white."""
    grey = image.convert("L")
    return sum(count for value, count in enumerate(grey.histogram()) if value < 250)


async def test_three_charts_of_a_period_decode_with_size_and_content(store):
    await seed(store)
    view = await overview(MoneyReports(store), date(2026, 11, 26), date(2026, 11, 28))
    drawn = charts(view, ZH)
    assert [c.name for c in drawn] == ["revenue_profit", "profit_by_channel", "top_skus"]
    for chart in drawn:
        image = decode(chart.png)
        panels = len({r.currency for r in {"revenue_profit": view.over_time, "profit_by_channel": view.by_channel,
                                           "top_skus": view.by_sku}[chart.name].rows})
        assert image.size == (int(WIDTH_IN * DPI), int(HEIGHT_IN * DPI) * panels) == (800, 320 * 2)  # CNY and XTR
        assert len(image.getcolors(maxcolors=1 << 20) or []) > 20  # lines, bars, text: not a blank or one-colour image
        assert 0.02 < ink(image) / (image.size[0] * image.size[1]) < 0.6


async def test_an_empty_period_draws_a_note_and_sales_draw_more(store):
    await seed(store)
    reports = MoneyReports(store)
    empty = top_skus(await reports.report(date(2025, 1, 1), date(2025, 1, 2), "sku"), ZH)
    full = top_skus(await reports.report(date(2026, 11, 26), date(2026, 11, 28), "sku"), ZH)
    empty_image, full_image = decode(empty.png), decode(full.png)
    assert empty_image.size == (800, 320)
    assert 0 < ink(empty_image) < ink(full_image)


def test_chinese_labels_render_real_glyphs():
    use_cjk_font()
    assert cjk_font_path().is_file()
    until = datetime(2026, 11, 28, tzinfo=UTC)

    def drawn(label: str) -> Image.Image:
        rep = MoneyReport(until, until, "channel", "UTC", [], [])
        return decode(profit_by_channel(rep, ChartText("", label, "", "", "", label)).png)

    first, second, same = drawn("利润"), drawn("渠道"), drawn("利润")
    assert ImageChops.difference(first, same).getbbox() is None  # deterministic
    assert ImageChops.difference(first, second).getbbox() is not None  # different glyphs, not two tofu boxes


def test_wrong_grouping_is_refused():
    at = datetime(2026, 11, 28, tzinfo=UTC)
    with pytest.raises(ValueError, match="by channel"):
        profit_by_channel(MoneyReport(at, at, "sku", "UTC", [], []), ZH)
    assert [period_grouping(date(2026, 1, 1), date(2026, 1, d)) for d in (2, 31)] == ["day", "day"]
    assert period_grouping(date(2026, 1, 1), date(2026, 6, 1)) == "week"
    assert period_grouping(date(2025, 1, 1), date(2026, 6, 1)) == "month"
